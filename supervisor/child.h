/*
 * child.h — the front's end of one stdio MCP server: its stdin write queue, its stdout framed
 * into JSON-RPC messages, its stderr relayed to the log, and its broker-id namespace.
 *
 * JSON-RPC id rewriting lives with the owner (session.c), which knows whose request is whose.
 *
 * Everything a child writes is untrusted: lines are bounded (an oversized one gets the child
 * killed as misbehaving), malformed ones are dropped and logged, stderr is rate-limited.
 */
#ifndef MCPVISOR_CHILD_H
#define MCPVISOR_CHILD_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "idmap.h"
#include "jsonrpc.h"

#define CHILD_GRACE_MS 2000
struct bufferevent;
struct event;
struct event_base;

/* What children need from the process that runs them, given by it (front.c) so child.c never
 * reaches up into it. One per process; it also owns the registry of live children. */
struct child_env {
    struct event_base *base;
    const struct config_limits *limits; /* max_line_bytes, max_child_write_bytes, stderr rate */
    /* Kills pid (the spawner does it). */
    void (*kill)(void *ctx, pid_t pid);
    /* Kills pid ms later unless its exit is reported first; server and tenant name it. */
    void (*kill_after)(void *ctx, pid_t pid, unsigned ms, const char *server, const char *tenant);
    void *ctx;
    struct idmap live; /* pid → struct child not yet reaped nor freed */
};

/* Fills env (the registry starts empty). */
void child_env_init(struct child_env *env, struct event_base *base,
                    const struct config_limits *limits, void (*kill)(void *ctx, pid_t pid),
                    void (*kill_after)(void *ctx, pid_t pid, unsigned ms, const char *server,
                                       const char *tenant),
                    void *ctx);
/* Forgets the registry (children still in it are not freed). */
void child_env_free(struct child_env *env);
/* The live child with this pid, or NULL. */
struct child *child_find(struct child_env *env, pid_t pid);

struct child_ops {
    /* A well-formed message from the child; the callee takes ownership of msg; line/len are
     * the bytes it was parsed from (borrowed for the call). kind JSONRPC_INVALID: a JSON object
     * with a numeric id and no method that is not a valid response (it answers nothing). */
    void (*message)(void *owner, cJSON *msg, enum jsonrpc_kind kind, const char *line, size_t len);
    /* The child is gone (exited, or killed as misbehaving). Called at most once; the callee may
     * free the child from inside it. */
    void (*gone)(void *owner, const char *why);
};

struct child {
    struct child_env *env;
    pid_t pid;
    char server[CONFIG_NAME_MAX];
    char tenant[CONFIG_NAME_MAX];
    struct bufferevent *in, *out, *err;
    const struct child_ops *ops;
    void *owner;
    bool gone;
    /* stderr rate limit: a token bucket refilled at limits.stderr_lines_per_s */
    double tokens;
    uint64_t last_refill_ms;
    uint64_t suppressed;
    struct event *stderr_timer; /* reports suppressed lines even if the child goes quiet */
};

/* Takes ownership of fds[0..2] (stdin, stdout, stderr). NULL on failure (fds closed). */
struct child *child_new(struct child_env *env, pid_t pid, const int fds[3], const char *server,
                        const char *tenant, const struct child_ops *ops, void *owner);
/* Queues text + "\n" for the child's stdin. -1 when the queue is over
 * limits.max_child_write_bytes (back-pressure: the caller refuses the message) or the child is
 * gone. */
int child_write(struct child *c, const char *text, size_t len);
/* Kills the child (through the spawner) and reports it gone with `why`. */
void child_kill(struct child *c, const char *why);
/* The spawner reaped it. */
void child_exited(struct child *c, int status, int sig);
/* The owner is done with the child (session ended): stop reading it; child_free then lets it
 * go gracefully. The gone callback is not called. */
void child_retire(struct child *c);
/* Closes the pipes and forgets the child. One still running gets its stdin closed — the stdio
 * transport's way of asking a server to exit — and is killed CHILD_GRACE_MS later if it has
 * not. */
void child_free(struct child *c);

#endif
