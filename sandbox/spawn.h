/*
 * spawn.h — starting one stdio MCP server: everything between fork and execve.
 *
 * The caller (the privileged spawner) builds a struct spawn_plan up front — argv, envp, the
 * mount list, ids, rlimits, the compiled seccomp program, the Landlock rules — so that nothing
 * after clone parses or allocates. The child applies each step in the fixed order of DESIGN.md;
 * a failed step is reported as {step, errno} on a close-on-exec status pipe and the child
 * _exits: it never continues half-confined, and never reaches execve with a step skipped.
 *
 * The parent's part is split so that the spawner never waits on one child: spawn_begin does what
 * is quick (clone, id maps, cgroup entry, "go") and returns; the caller polls the status fd and
 * calls spawn_complete, or spawn_abort at the deadline. A child stuck in set-up then costs only
 * its own spawn. spawn_start is the blocking form of the same, for one-off callers.
 */
#ifndef MCPVISOR_SPAWN_H
#define MCPVISOR_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "landlock.h"
#include "seccomp.h"

#define SPAWN_EXIT_FAILED 127 /* the child's exit status when a set-up step failed */
#define SPAWN_MAX_MOUNTS  64
#define SPAWN_SIGNAL_BASE 128 /* the sandbox init exits 128+N when the server died of signal N */

enum spawn_mount_kind {
    SPAWN_MOUNT_RO = 0, /* read-only bind of the same host path */
    SPAWN_MOUNT_RW,     /* read-write bind */
    SPAWN_MOUNT_TMPFS,  /* a fresh tmpfs */
    SPAWN_MOUNT_LINK,   /* a symlink (host /bin → usr/bin and the like) */
};

struct spawn_mount {
    enum spawn_mount_kind kind;
    char path[256];   /* the path, the same inside and outside */
    char target[256]; /* SPAWN_MOUNT_LINK: the link's content */
    bool is_dir;      /* binds: a directory (else a file) */
    bool implicit;    /* mcpvisor's own choice (runtime files, the command's folder): yields to
                         any bind the manifest makes around it */
};

struct spawn_rlimits {
    bool set_cpu, set_nofile, set_nproc, set_fsize, set_as;
    rlim_t cpu_s, nofile, nproc, fsize, as_bytes;
};

struct spawn_plan {
    const char *path;  /* absolute path of the program */
    char *const *argv; /* NULL-terminated, borrowed */
    char *const *envp; /* NULL-terminated, the complete environment, borrowed */

    bool sandbox;    /* false only where a test or a weaker, declared mode asks */
    bool userns;     /* unprivileged spawner: a user namespace maps our ids */
    uid_t uid, gid;  /* the child's ids (root mode) */
    uid_t outer_uid; /* userns mode: our uid and gid, mapped to themselves */
    gid_t outer_gid;
    bool network;        /* manifest network "host"; else a fresh net namespace (lo only) */
    const char *newroot; /* an empty directory to build the root on (private to the ns) */
    const struct spawn_mount *mounts;
    size_t nmounts;
    struct spawn_rlimits rl;
    int cap_last_cap;
    const struct sandbox_seccomp *seccomp; /* NULL: no filter (only when sandbox is false) */
    const struct sandbox_landlock_rule *landlock;
    size_t nlandlock;
    int landlock_abi; /* 0: not available on this kernel */
    /* Called in the parent between clone and "go" (cgroup placement); may be NULL. Returns -1
     * with errno to abort the spawn (the child is killed). */
    int (*before_go)(void *arg, pid_t pid);
    void *before_go_arg;
    /* Time the child may take from "go" to execve; beyond it, it is killed and the spawn fails
     * with step "setup" and ETIMEDOUT (spawn_timeout, spawn_abort). 0: no deadline. */
    uint32_t setup_timeout_ms;
};

struct spawn_result {
    pid_t pid;
    pid_t server_pid; /* the server's host pid (the child of the sandbox init), or pid */
    int fd_stdin;     /* write end of the child's stdin; owned by the caller */
    int fd_stdout;    /* read end of the child's stdout; owned by the caller */
    int fd_stderr;    /* read end of the child's stderr; owned by the caller */
    char step[16];    /* on failure: the step that failed */
    int err;          /* on failure: its errno */
};

struct spawn_pending; /* a child between "go" and execve */

enum { SPAWN_FAILED = -1, SPAWN_DONE = 0, SPAWN_WAITING = 1 };

/*
 * Clones the child, maps its ids, runs before_go and gives it the go-ahead, without waiting for
 * its set-up. Returns 0 with *pending; -1 with res->step and res->err (the child, if any, has
 * been reaped). The plan may be freed once this returns (the child has its own copy).
 */
int spawn_begin(const struct spawn_plan *plan, struct spawn_pending **pending,
                struct spawn_result *res);

/* Readable (POLLIN or POLLHUP) when the child exec'd or reported a failed step. */
int spawn_status_fd(const struct spawn_pending *p);
pid_t spawn_pid(const struct spawn_pending *p);
/* Milliseconds until its set-up deadline (0: passed), or -1 without one: a poll(2) timeout. */
int spawn_timeout(const struct spawn_pending *p);

/*
 * Reads the status fd. SPAWN_WAITING: nothing yet, p still pending. Otherwise p is freed and
 * SPAWN_DONE: res as from spawn_start; SPAWN_FAILED: res->step and res->err, and the child has
 * been sent SIGKILL; res->pid is its pid, for the caller to reap (it never blocks here).
 */
int spawn_complete(struct spawn_pending *p, struct spawn_result *res);

/*
 * The caller reaped the pending child (it died during set-up, or exec'd and died at once): as
 * spawn_complete, from what the status pipe holds; on SPAWN_DONE res->pid is already dead (a
 * child killed without a word before execve looks the same), on SPAWN_FAILED res->pid is -1.
 * Frees p.
 */
int spawn_reaped(struct spawn_pending *p, struct spawn_result *res);

/* The deadline passed: SIGKILL, res->step "setup", res->err ETIMEDOUT, res->pid for the caller
 * to reap. Frees p. */
void spawn_abort(struct spawn_pending *p, struct spawn_result *res);

/*
 * Clones and execs per plan, waiting for the set-up (spawn_begin, poll, spawn_complete or
 * spawn_abort). Returns 0 with res->pid and the three pipe ends (close-on-exec,
 * non-blocking) once execve succeeded; -1 with res->step and res->err otherwise (the failed
 * child has been reaped).
 */
int spawn_start(const struct spawn_plan *plan, struct spawn_result *res);

/* The calling process's argv strings (argv[0] to the end of the last one): a sandbox init, a
 * copy of the caller that never execs, blanks them and shows a neutral name instead, so a
 * server reading /proc/1/cmdline learns nothing of the daemon's command line. */
void spawn_set_title_area(char *start, size_t len);

#endif
