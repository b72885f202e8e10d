/*
 * child.c — pipes of one child, on bufferevents, and the registry of live children. Never
 * blocks: writes queue in the stdin bufferevent (bounded by max_child_write_bytes), reads are
 * framed as they arrive. Never reaches above itself: the front through child_env, the owner
 * (session) through child_ops.
 */
#include "child.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "util.h"

#define CHILD_STDERR_LINE_MAX 4096
#define CHILD_STDERR_BURST    100.0

void child_env_init(struct child_env *env, struct event_base *base,
                    const struct config_limits *limits, void (*kill)(void *ctx, pid_t pid),
                    void (*kill_after)(void *ctx, pid_t pid, unsigned ms, const char *server,
                                       const char *tenant),
                    void *ctx)
{
    env->base = base;
    env->limits = limits;
    env->kill = kill;
    env->kill_after = kill_after;
    env->ctx = ctx;
    idmap_init(&env->live);
}

void child_env_free(struct child_env *env)
{
    idmap_free(&env->live);
}

struct child *child_find(struct child_env *env, pid_t pid)
{
    return idmap_get(&env->live, (uint64_t)pid);
}

static void child_report_gone(struct child *c, const char *why)
{
    if (c->gone)
        return;
    c->gone = true;
    /* Stop reading: nothing the child writes after this is trusted or wanted. */
    if (c->out != NULL)
        bufferevent_disable(c->out, EV_READ);
    if (c->err != NULL)
        bufferevent_disable(c->err, EV_READ);
    c->ops->gone(c->owner, why); /* may free c */
}

void child_kill(struct child *c, const char *why)
{
    if (c->pid > 0)
        c->env->kill(c->env->ctx, c->pid);
    child_report_gone(c, why);
}

/*
 * The numeric id of a malformed line that looks like an answer (an object with an "id" and no
 * "method"), to fail that request now rather than at its timeout; NULL otherwise. msg is the
 * line's parsed value, or NULL when it was refused before parsing: then a lenient reading
 * (cJSON's) is enough, since the worst a misread id does is fail another request of the child
 * that wrote it. Returns a new item the caller owns.
 */
static cJSON *malformed_answer_id(const cJSON *msg, const char *line, size_t len)
{
    cJSON *lenient = msg == NULL ? cJSON_ParseWithLength(line, len) : NULL;
    const cJSON *v = msg != NULL ? msg : lenient;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    cJSON *out = NULL;
    if (cJSON_IsObject(v) && cJSON_IsNumber(id) &&
        cJSON_GetObjectItemCaseSensitive(v, "method") == NULL)
        out = cJSON_CreateNumber(id->valuedouble);
    cJSON_Delete(lenient);
    return out;
}

static void on_stdout(struct bufferevent *bev, void *arg)
{
    struct child *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t max = c->env->limits->max_line_bytes;
    char *line;
    size_t len;

    while (!c->gone) {
        enum frame_result r = frame_next(in, max, &line, &len);
        if (r == FRAME_NONE)
            return;
        if (r == FRAME_OVERSIZE) {
            log_warn("child_misbehaving server=%s tenant=%s pid=%d reason=line_too_long "
                     "max_line_bytes=%zu",
                     c->server, c->tenant, (int)c->pid, max);
            evbuffer_drain(in, evbuffer_get_length(in));
            child_kill(c, "output line over max_line_bytes");
            return;
        }
        /* A line another parser could read differently from the checks here (not strict JSON,
         * a \u0000, a member named twice) is malformed: dropped, and logged. */
        const char *problem;
        size_t at;
        cJSON *msg = jsonrpc_parse(line, len, &problem, &at);
        enum jsonrpc_kind kind =
            msg != NULL && problem == NULL ? jsonrpc_classify(msg) : JSONRPC_INVALID;
        if (kind == JSONRPC_INVALID) {
            char reason[160], qr[200], q[160];
            if (msg == NULL && problem != NULL)
                snprintf(reason, sizeof(reason), "not valid JSON: %s at byte %zu", problem, at);
            else
                snprintf(reason, sizeof(reason), "%s",
                         problem != NULL ? problem
                         : msg != NULL   ? "not a JSON-RPC 2.0 message"
                                         : "out of memory");
            log_warn("child_malformed_line server=%s tenant=%s pid=%d reason=%s bytes=%zu line=%s",
                     c->server, c->tenant, (int)c->pid,
                     log_quote(qr, sizeof(qr), reason, strlen(reason)), len,
                     log_quote(q, sizeof(q), line, len));
            cJSON *id = malformed_answer_id(msg, line, len);
            cJSON_Delete(msg);
            if (id != NULL) {
                /* It meant to answer one of our requests: let that request fail now. Only the
                 * id goes on (and the bytes, which are logged by their hash). */
                cJSON *only = cJSON_CreateObject();
                if (only != NULL) {
                    cJSON_AddItemToObject(only, "id", id);
                    c->ops->message(c->owner, only, JSONRPC_INVALID, line, len);
                } else {
                    cJSON_Delete(id);
                }
            }
            free(line);
            continue;
        }
        if (memchr(line, '\r', len) != NULL) {
            /* A stray CR would split an SSE data field: forward a re-serialised copy. */
            char *clean = jsonrpc_print(msg);
            if (clean == NULL) {
                cJSON_Delete(msg);
                free(line);
                continue;
            }
            free(line);
            line = clean;
            len = strlen(clean);
        }
        /* The owner defers freeing c while a callback runs (session_end), so c stays valid. */
        c->ops->message(c->owner, msg, kind, line, len);
        free(line);
    }
}

static void stderr_report_suppressed(struct child *c)
{
    if (c->suppressed == 0)
        return;
    log_warn("child_stderr_suppressed server=%s tenant=%s pid=%d lines=%llu "
             "limit=stderr_lines_per_s",
             c->server, c->tenant, (int)c->pid, (unsigned long long)c->suppressed);
    c->suppressed = 0;
}

static void on_stderr_timer(evutil_socket_t fd, short what, void *arg)
{
    stderr_report_suppressed(arg);
}

static void stderr_line(struct child *c, const char *line, size_t len)
{
    uint64_t now = (uint64_t)util_mono_ms();
    double rate = (double)c->env->limits->stderr_lines_per_s;
    c->tokens += (double)(now - c->last_refill_ms) * rate / 1000.0;
    if (c->tokens > CHILD_STDERR_BURST)
        c->tokens = CHILD_STDERR_BURST;
    c->last_refill_ms = now;
    if (c->tokens < 1.0) {
        if (c->suppressed++ == 0) {
            struct timeval tv = {1, 0};
            evtimer_add(c->stderr_timer, &tv);
        }
        return;
    }
    c->tokens -= 1.0;
    char q[CHILD_STDERR_LINE_MAX + 64];
    stderr_report_suppressed(c);
    log_info("child_stderr server=%s tenant=%s pid=%d line=%s", c->server, c->tenant, (int)c->pid,
             log_quote(q, sizeof(q), line, len));
}

static void on_stderr(struct bufferevent *bev, void *arg)
{
    struct child *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t eol = 0;
        struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_LF);
        size_t n;
        if (p.pos < 0) {
            if (evbuffer_get_length(in) < CHILD_STDERR_LINE_MAX)
                return;
            n = CHILD_STDERR_LINE_MAX; /* an endless line is logged in pieces */
            eol = 0;
        } else {
            n = (size_t)p.pos;
        }
        char buf[CHILD_STDERR_LINE_MAX];
        size_t take = n < sizeof(buf) ? n : sizeof(buf);
        evbuffer_remove(in, buf, take);
        evbuffer_drain(in, n - take + eol);
        stderr_line(c, buf, take);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct child *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        if (bev == c->in && (what & BEV_EVENT_ERROR))
            log_debug("child_stdin_closed server=%s pid=%d", c->server, (int)c->pid);
        /* The exit itself is reported by the spawner (child_exited). */
    }
}

struct child *child_new(struct child_env *env, pid_t pid, const int fds[3], const char *server,
                        const char *tenant, const struct child_ops *ops, void *owner)
{
    struct child *c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->env = env;
    c->pid = pid;
    snprintf(c->server, sizeof(c->server), "%s", server);
    snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
    c->ops = ops;
    c->owner = owner;
    c->tokens = CHILD_STDERR_BURST;
    c->last_refill_ms = (uint64_t)util_mono_ms();
    c->in = bufferevent_socket_new(env->base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    c->out = bufferevent_socket_new(env->base, fds[1], BEV_OPT_CLOSE_ON_FREE);
    c->err = bufferevent_socket_new(env->base, fds[2], BEV_OPT_CLOSE_ON_FREE);
    c->stderr_timer = evtimer_new(env->base, on_stderr_timer, c);
    if (c->in == NULL || c->out == NULL || c->err == NULL || c->stderr_timer == NULL)
        goto fail;
    bufferevent_setcb(c->in, NULL, NULL, on_event, c);
    bufferevent_setcb(c->out, on_stdout, NULL, on_event, c);
    bufferevent_setcb(c->err, on_stderr, NULL, on_event, c);
    /* Stop reading a child that floods faster than it is framed. */
    bufferevent_setwatermark(c->out, EV_READ, 0, env->limits->max_line_bytes + 65536);
    bufferevent_setwatermark(c->err, EV_READ, 0, CHILD_STDERR_LINE_MAX * 4);
    bufferevent_enable(c->out, EV_READ);
    bufferevent_enable(c->err, EV_READ);
    bufferevent_enable(c->in, EV_WRITE);
    if (idmap_put(&env->live, (uint64_t)pid, c) == -1)
        goto fail;
    return c;
fail:
    if (c != NULL) {
        if (c->in != NULL)
            bufferevent_free(c->in);
        else
            close(fds[0]);
        if (c->out != NULL)
            bufferevent_free(c->out);
        else
            close(fds[1]);
        if (c->err != NULL)
            bufferevent_free(c->err);
        else
            close(fds[2]);
        if (c->stderr_timer != NULL)
            event_free(c->stderr_timer);
        free(c);
    } else {
        close(fds[0]);
        close(fds[1]);
        close(fds[2]);
    }
    env->kill(env->ctx, pid);
    return NULL;
}

int child_write(struct child *c, const char *text, size_t len)
{
    if (c->gone)
        return -1;
    struct evbuffer *out = bufferevent_get_output(c->in);
    if (evbuffer_get_length(out) + len + 1 > c->env->limits->max_child_write_bytes)
        return -1;
    if (evbuffer_add(out, text, len) == -1 || evbuffer_add(out, "\n", 1) == -1)
        return -1;
    return 0;
}

void child_exited(struct child *c, int status, int sig)
{
    char why[64];
    if (sig != 0)
        snprintf(why, sizeof(why), "server killed by signal %d", sig);
    else
        snprintf(why, sizeof(why), "server exited with status %d", status);
    idmap_del(&c->env->live, (uint64_t)c->pid);
    c->pid = -1; /* reaped: the number may be reused, never signal it again */
    child_report_gone(c, why);
}

void child_retire(struct child *c)
{
    if (c->gone)
        return;
    c->gone = true;
    bufferevent_disable(c->out, EV_READ);
    bufferevent_disable(c->err, EV_READ);
}

void child_free(struct child *c)
{
    if (c == NULL)
        return;
    if (c->pid > 0) {
        idmap_del(&c->env->live, (uint64_t)c->pid);
        /* Closing stdin (below) asks it to exit; the spawner kills it if it lingers. */
        c->env->kill_after(c->env->ctx, c->pid, CHILD_GRACE_MS, c->server, c->tenant);
    }
    stderr_report_suppressed(c);
    event_free(c->stderr_timer);
    bufferevent_free(c->in);
    bufferevent_free(c->out);
    bufferevent_free(c->err);
    free(c);
}
