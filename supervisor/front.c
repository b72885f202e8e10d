/*
 * front.c — the front process's loop: listeners, the privsep channel, signals, draining. Owns
 * the process (event base, config, spawner channel) and wires the layers below it: httpd →
 * http → session → child. It must never be called by child.c (which gets a child_env);
 * http.c and session.c still use struct front for config, audit and spawns.
 *
 * If the spawner goes away the front cannot start or stop children any more: it exits non-zero
 * at once (the children die with the spawner through PDEATHSIG), and systemd restarts the unit.
 */
#include "front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit.h"
#include "auth.h"
#include "child.h"
#include "http.h"
#include "httpd.h"
#include "quota.h"
#include "seccomp.h"
#include "jwks.h"
#include "tls.h"
#include "log.h"
#include "pool.h"
#include "privsep.h"
#include "session.h"
#include "util.h"

#define FRONT_PRIVSEP_SNDBUF 16384 /* bytes: a few dozen messages */

#define FRONT_DRAIN_S       10
#define FRONT_DRAIN_TICK_MS 50
#define FRONT_KEEPALIVE_S   15
#define FRONT_QUOTA_SWEEP_S 10 /* idle quota buckets are dropped this often */

/* Sends a message to the spawner, or queues it while the channel is full: a burst of spawns
 * is back-pressure, not a broken channel. The queue is bounded by what fills it: children
 * starting (limits.max_spawns_in_flight) and kills (one per child). */
static void privsep_post(struct front *f, const union privsep_msg *msg)
{
    if (f->outq_len == 0) {
        if (privsep_send(f->sock, msg, NULL, 0) == 0)
            return;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
            fatal("cannot reach the spawner");
    }
    if (f->outq_head + f->outq_len == f->outq_cap) {
        if (f->outq_head > 0) {
            memmove(f->outq, f->outq + f->outq_head, f->outq_len * sizeof(*f->outq));
            f->outq_head = 0;
        } else {
            size_t cap = f->outq_cap ? f->outq_cap * 2 : 64;
            union privsep_msg *q = realloc(f->outq, cap * sizeof(*q));
            if (q == NULL)
                fatalx("out of memory queueing for the spawner");
            f->outq = q;
            f->outq_cap = cap;
        }
    }
    f->outq[f->outq_head + f->outq_len++] = *msg;
    if (f->outq_len == 1)
        log_debug("privsep_backpressure note=\"the spawner's channel is full; queueing\"");
    event_add(f->sock_wev, NULL);
}

static void on_privsep_writable(evutil_socket_t fd, short what, void *arg)
{
    struct front *f = arg;
    while (f->outq_len > 0) {
        if (privsep_send(f->sock, &f->outq[f->outq_head], NULL, 0) == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                return; /* still full: the event stays */
            fatal("cannot reach the spawner");
        }
        f->outq_head++;
        f->outq_len--;
    }
    f->outq_head = 0;
    event_del(f->sock_wev);
}

int front_fit_descriptors(struct config_limits *lim, uint64_t nofile)
{
    uint64_t need =
        FRONT_FD_RESERVE + (uint64_t)lim->max_connections + 3 * (uint64_t)lim->max_sessions;
    if (need <= nofile)
        return 0;
    if (nofile < FRONT_FD_RESERVE + 16)
        return -1;
    uint64_t avail = nofile - FRONT_FD_RESERVE;
    /* a quarter for connections, the rest for sessions: each session also holds a connection
     * while it streams */
    uint32_t conns = lim->max_connections;
    if (conns > avail / 4)
        conns = (uint32_t)(avail / 4 > 0 ? avail / 4 : 1);
    uint64_t sessions = (avail - conns) / 3;
    if (lim->max_sessions > sessions)
        lim->max_sessions = (uint32_t)(sessions > 0 ? sessions : 1);
    if (conns < lim->max_connections) {
        /* one address keeps the share of the whole it had */
        uint64_t per = (uint64_t)lim->max_connections_per_address * conns / lim->max_connections;
        if (per < lim->max_connections_per_address)
            lim->max_connections_per_address = (uint32_t)(per > 0 ? per : 1);
        lim->max_connections = conns;
    }
    return 1;
}

struct front_spawn *front_spawn(struct front *f, const struct config_manifest *m,
                                const struct config_tenant *t, front_spawn_cb cb, void *arg)
{
    union privsep_msg msg;
    struct front_spawn *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return NULL;
    sp->req = ++f->next_spawn_req;
    sp->cb = cb;
    sp->arg = arg;
    snprintf(sp->server, sizeof(sp->server), "%s", m->name);
    const char *tname = t != NULL ? t->name : PRIVSEP_SHARED_TENANT;
    snprintf(sp->tenant_name, sizeof(sp->tenant_name), "%s", tname);
    memset(&msg, 0, sizeof(msg));
    msg.spawn.type = PRIVSEP_SPAWN;
    msg.spawn.req = sp->req;
    if (privsep_set_name(msg.spawn.server, sizeof(msg.spawn.server), m->name) == -1 ||
        privsep_set_name(msg.spawn.tenant, sizeof(msg.spawn.tenant), tname) == -1 ||
        idmap_put(&f->spawns, sp->req, sp) == -1) {
        free(sp);
        return NULL;
    }
    privsep_post(f, &msg);
    return sp;
}

/* An audit record of the spawner's doing: spawn (ok or failed) and exit. */
static void audit_child(struct front *f, const char *event, const char *server, const char *tenant,
                        pid_t pid)
{
    cJSON *ev = front_audit_event(f, event, NULL, server, NULL);
    if (ev == NULL)
        return;
    if (tenant != NULL)
        cJSON_AddStringToObject(ev, "tenant", tenant);
    cJSON_AddNumberToObject(ev, "child_pid", pid);
    front_audit(f, ev);
}

void front_spawn_cancel(struct front *f, struct front_spawn *sp)
{
    (void)f;
    sp->cb = NULL; /* the answer still arrives; on_privsep then discards it */
}

void front_kill(struct front *f, pid_t pid)
{
    union privsep_msg msg;
    if (pid <= 0)
        return;
    memset(&msg, 0, sizeof(msg));
    msg.kill.type = PRIVSEP_KILL;
    msg.kill.pid = pid;
    privsep_post(f, &msg);
}

struct config *front_config_from_fd(int fd, char *err, size_t errlen)
{
    struct config_source src;
    char *path = NULL;
    struct config *cfg = NULL;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size > (off_t)64 << 20 || lseek(fd, 0, SEEK_SET) == -1) {
        snprintf(err, errlen, "unreadable bundle");
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)size + 1);
    size_t off = 0;
    while (buf != NULL && off < (size_t)size) {
        ssize_t r = read(fd, buf + off, (size_t)size - off);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    close(fd);
    if (buf == NULL || off != (size_t)size) {
        snprintf(err, errlen, "cannot read the bundle");
        free(buf);
        return NULL;
    }
    buf[off] = '\0';
    if (config_bundle_source(buf, off, &src, &path, err, errlen) == 0) {
        cfg = config_load(&src, path, err, errlen);
        config_bundle_source_free(&src);
    }
    OPENSSL_cleanse(buf, off);
    free(buf);
    free(path);
    return cfg;
}

/* SIGHUP, relayed by the parent with a fresh bundle: new TLS certificates and keys take effect
 * for new connections. Other settings need a restart; the log says so. */
static void reload_tls(struct front *f, int fd)
{
    char err[CONFIG_ERR_MAX];
    struct config *ncfg = front_config_from_fd(fd, err, sizeof(err));
    size_t n = 0;
    if (ncfg == NULL) {
        log_error("reload_refused error=\"%s\"", err);
        cJSON *ev = front_audit_event(f, "config_reload", NULL, NULL, NULL);
        if (ev != NULL) {
            cJSON_AddStringToObject(ev, "outcome", "refused");
            cJSON_AddStringToObject(ev, "error", err);
            front_audit(f, ev);
        }
        return;
    }
    for (size_t i = 0; i < f->nlisteners && i < ncfg->nlisteners; i++) {
        const struct config_listener *nl = &ncfg->listeners[i];
        if (nl->tls_cert_pem == NULL || f->cfg->listeners[i].tls_cert_pem == NULL)
            continue;
        struct ssl_ctx_st *tls =
            tls_server_ctx(nl->tls_cert_pem, nl->tls_key_pem, err, sizeof(err));
        if (tls == NULL) {
            log_error("reload_tls_refused listener=%s error=\"%s\" note=\"keeping the current "
                      "certificate\"",
                      nl->address, err);
            continue;
        }
        http_listener_set_tls(f->listener[i], tls);
        n++;
    }
    jwks_reload_text(f->jwks, ncfg->jwt_jwks_text);
    config_free(ncfg);
    cJSON *ev = front_audit_event(f, "config_reload", NULL, NULL, NULL);
    if (ev != NULL) {
        cJSON_AddStringToObject(ev, "outcome", "ok");
        cJSON_AddNumberToObject(ev, "tls_listeners", (double)n);
        front_audit(f, ev);
    }
    log_info("reloaded tls_listeners=%zu note=\"certificates, keys and jwks_file reloaded; other "
             "settings take effect at restart\"",
             n);
}

struct lingering {
    struct front *f;
    pid_t pid;
    struct event *timer;
    char server[CONFIG_NAME_MAX], tenant[CONFIG_NAME_MAX];
};

static void lingering_free(struct lingering *l)
{
    event_free(l->timer);
    free(l);
}

static void on_linger_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct lingering *l = arg;
    idmap_del(&l->f->lingering, (uint64_t)l->pid);
    log_info("child_kill_after_grace pid=%d", (int)l->pid);
    front_kill(l->f, l->pid);
    lingering_free(l);
}

void front_kill_after(struct front *f, pid_t pid, unsigned ms, const char *server,
                      const char *tenant)
{
    struct lingering *l = calloc(1, sizeof(*l));
    if (l != NULL) {
        l->f = f;
        l->pid = pid;
        snprintf(l->server, sizeof(l->server), "%s", server);
        snprintf(l->tenant, sizeof(l->tenant), "%s", tenant);
        l->timer = evtimer_new(f->base, on_linger_timeout, l);
    }
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    if (l == NULL || l->timer == NULL || evtimer_add(l->timer, &tv) == -1 ||
        idmap_put(&f->lingering, (uint64_t)pid, l) == -1) {
        if (l != NULL && l->timer != NULL)
            event_free(l->timer);
        free(l);
        front_kill(f, pid); /* no timer: no grace */
    }
}

/* child_env's hooks: children ask for kills through these, never by calling front_*. */
static void child_kill_cb(void *ctx, pid_t pid)
{
    front_kill(ctx, pid);
}

static void child_kill_after_cb(void *ctx, pid_t pid, unsigned ms, const char *server,
                                const char *tenant)
{
    front_kill_after(ctx, pid, ms, server, tenant);
}

static void lingering_release(void *v)
{
    struct lingering *l = v;
    front_kill(l->f, l->pid);
    lingering_free(l);
}

static void on_privsep(evutil_socket_t fd, short what, void *arg)
{
    struct front *f = arg;
    for (;;) {
        union privsep_msg msg;
        int fds[3];
        size_t nfds = 0;
        int r = privsep_recv(f->sock, &msg, fds, &nfds);
        if (r == -1 && (errno == EAGAIN || errno == EINTR))
            return;
        if (r == 0)
            fatalx("the spawner went away; stopping");
        if (r == -1)
            fatal("privsep channel");
        if (r == PRIVSEP_LOST_FDS && msg.type == PRIVSEP_SPAWNED) {
            /* Out of descriptors here: that child cannot be served. One failed spawn. */
            log_warn("spawn_fds_lost pid=%d note=\"the front is out of descriptors; the child "
                     "is killed\"",
                     (int)msg.spawned.pid);
            front_kill(f, msg.spawned.pid);
            union privsep_msg failed;
            memset(&failed, 0, sizeof(failed));
            failed.spawn_failed.type = PRIVSEP_SPAWN_FAILED;
            failed.spawn_failed.req = msg.spawned.req;
            failed.spawn_failed.err = EMFILE;
            snprintf(failed.spawn_failed.step, sizeof(failed.spawn_failed.step), "receive");
            msg = failed;
        } else if (r == PRIVSEP_LOST_FDS) {
            log_error("privsep_fds_lost type=%u note=\"the front is out of descriptors; %s not "
                      "applied\"",
                      msg.type,
                      msg.type == PRIVSEP_RELOAD ? "the reload was" : "the audit reopen was");
            continue;
        }
        if (msg.type == PRIVSEP_SPAWNED || msg.type == PRIVSEP_SPAWN_FAILED) {
            uint64_t req = msg.type == PRIVSEP_SPAWNED ? msg.spawned.req : msg.spawn_failed.req;
            struct front_spawn *sp = idmap_del(&f->spawns, req);
            if (sp == NULL)
                fatalx("spawner answered a request never made");
            if (msg.type == PRIVSEP_SPAWNED)
                audit_child(f, "spawn", sp->server, sp->tenant_name, msg.spawned.pid);
            if (msg.type == PRIVSEP_SPAWNED) {
                if (sp->cb != NULL) {
                    sp->cb(sp->arg, msg.spawned.pid, fds, NULL, 0);
                } else {
                    for (size_t i = 0; i < nfds; i++)
                        close(fds[i]);
                    front_kill(f, msg.spawned.pid);
                }
            } else {
                msg.spawn_failed.step[sizeof(msg.spawn_failed.step) - 1] = '\0';
                cJSON *ev = front_audit_event(f, "spawn", NULL, sp->server, NULL);
                if (ev != NULL) {
                    cJSON_AddStringToObject(ev, "tenant", sp->tenant_name);
                    cJSON_AddStringToObject(ev, "outcome", "failed");
                    cJSON_AddStringToObject(ev, "step", msg.spawn_failed.step);
                    cJSON_AddStringToObject(ev, "error", strerror(msg.spawn_failed.err));
                    front_audit(f, ev);
                }
                if (sp->cb != NULL)
                    sp->cb(sp->arg, -1, NULL, msg.spawn_failed.step, msg.spawn_failed.err);
            }
            free(sp);
        } else if (msg.type == PRIVSEP_RELOAD) {
            reload_tls(f, fds[0]);
        } else if (msg.type == PRIVSEP_AUDIT_FD) {
            char err[256];
            if (f->audit == NULL)
                close(fds[0]);
            else if (audit_reopen(f->audit, fds[0], err, sizeof(err)) == -1)
                log_error("audit_reopen_refused error=\"%s\" note=\"still writing the previous "
                          "file\"",
                          err);
            else
                log_info("audit_reopened");
        } else if (msg.type == PRIVSEP_EXITED) {
            struct child *c = child_find(&f->children, msg.exited.pid);
            struct lingering *l = idmap_del(&f->lingering, (uint64_t)msg.exited.pid);
            const char *server = c != NULL ? c->server : l != NULL ? l->server : NULL;
            cJSON *ev = front_audit_event(f, "exit", NULL, server, NULL);
            if (ev != NULL) {
                if (server != NULL)
                    cJSON_AddStringToObject(ev, "tenant", c != NULL ? c->tenant : l->tenant);
                cJSON_AddNumberToObject(ev, "child_pid", msg.exited.pid);
                if (msg.exited.signal != 0) {
                    cJSON_AddNumberToObject(ev, "signal", msg.exited.signal);
                    if (msg.exited.signal == SIGSYS) {
                        const char *name = msg.exited.syscall_nr >= 0
                                               ? sandbox_syscall_name(msg.exited.syscall_nr)
                                               : NULL;
                        cJSON_AddStringToObject(ev, "seccomp_syscall",
                                                name != NULL ? name : "unknown");
                    }
                } else {
                    cJSON_AddNumberToObject(ev, "status", msg.exited.status);
                }
                front_audit(f, ev);
            }
            if (l != NULL)
                lingering_free(l); /* it left by itself */
            if (c != NULL)
                child_exited(c, msg.exited.status, msg.exited.signal);
        } else {
            fatalx("spawner sent an unexpected message type=%u", msg.type);
        }
    }
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct front *f = arg;
    f->drain_ticks++;
    if (session_pending_total() == 0) {
        log_info("drained");
        event_base_loopexit(f->base, NULL);
        return;
    }
    if (f->drain_ticks * FRONT_DRAIN_TICK_MS >= FRONT_DRAIN_S * 1000) {
        log_warn("drain_deadline requests_in_flight=%zu note=\"answering them with "
                 "server_unavailable\"",
                 session_pending_total());
        event_base_loopexit(f->base, NULL);
        return;
    }
    struct timeval tv = {0, FRONT_DRAIN_TICK_MS * 1000};
    evtimer_add(f->drain_timer, &tv);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    session_keepalive();
}

/* SIGTERM/SIGINT: stop taking new work, let requests in flight finish (bounded), then stop. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct front *f = arg;
    if (sig == SIGHUP) {
        /* The parent re-reads the files (we cannot) and sends them: see reload_tls(). */
        return;
    }
    if (f->draining)
        return;
    f->draining = true;
    log_info("draining sessions=%zu requests_in_flight=%zu deadline_s=%d", session_count(),
             session_pending_total(), FRONT_DRAIN_S);
    on_drain_tick(-1, 0, f);
}

static void listening_log(int fd, bool admin, bool tls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
        return;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        log_info("listening address=[%s]:%u admin=%d tls=%d", host, ntohs(s6->sin6_port), admin,
                 tls);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        log_info("listening address=%s:%u admin=%d tls=%d", host, ntohs(s4->sin_port), admin, tls);
    }
}

static void on_quota_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct front *f = arg;
    quota_sweep(f->quotas, util_mono_ms(), 0);
}

int front_run(const struct config *cfg, int sock, const int *lfds, size_t nl, int audit_fd)
{
    struct front f;
    memset(&f, 0, sizeof(f));
    f.cfg = cfg;
    f.sock = sock;
    idmap_init(&f.spawns);
    idmap_init(&f.lingering);
    idmap_init(&f.pending_ids);
    signal(SIGPIPE, SIG_IGN);

    f.base = event_base_new();
    if (f.base == NULL)
        fatalx("event_base_new");
    evutil_make_socket_nonblocking(sock);
    /* A burst of spawn requests queues here, bounded and accounted (privsep_post), rather than
     * in the kernel: a small send buffer keeps that path the ordinary one under load. */
    int sndbuf = FRONT_PRIVSEP_SNDBUF;
    if (setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == -1)
        log_warn("privsep_sndbuf error=\"%s\"", strerror(errno));
    f.sock_ev = event_new(f.base, sock, EV_READ | EV_PERSIST, on_privsep, &f);
    f.sock_wev = event_new(f.base, sock, EV_WRITE | EV_PERSIST, on_privsep_writable, &f);
    if (f.sock_wev == NULL)
        fatalx("out of memory");
    f.sig_term = evsignal_new(f.base, SIGTERM, on_signal, &f);
    f.sig_int = evsignal_new(f.base, SIGINT, on_signal, &f);
    f.sig_hup = evsignal_new(f.base, SIGHUP, on_signal, &f);
    f.drain_timer = evtimer_new(f.base, on_drain_tick, &f);
    f.keepalive = event_new(f.base, -1, EV_PERSIST, on_keepalive, &f);
    if (f.sock_ev == NULL || f.sig_term == NULL || f.sig_int == NULL || f.sig_hup == NULL ||
        f.drain_timer == NULL || f.keepalive == NULL)
        fatalx("cannot create events");
    event_add(f.sock_ev, NULL);
    event_add(f.sig_term, NULL);
    event_add(f.sig_int, NULL);
    event_add(f.sig_hup, NULL);
    struct timeval ka = {.tv_sec = FRONT_KEEPALIVE_S};
    event_add(f.keepalive, &ka);
    child_env_init(&f.children, f.base, &cfg->limits, child_kill_cb, child_kill_after_cb, &f);
    static const struct pool_spawner spawner = {front_spawn, front_spawn_cancel};
    pool_module_init(&f, &spawner);
    session_module_init(&f, &http_session_transport);
    f.quotas = quota_table_new(0);
    f.quota_sweep = event_new(f.base, -1, EV_PERSIST, on_quota_sweep, &f);
    if (f.quotas == NULL || f.quota_sweep == NULL)
        fatalx("cannot create the quota table");
    struct timeval sweep = {.tv_sec = FRONT_QUOTA_SWEEP_S};
    event_add(f.quota_sweep, &sweep);
    if (audit_fd != -1) {
        char err[512];
        f.audit =
            audit_new(f.base, audit_fd, cfg->audit_sync, cfg->audit_batch_ms, err, sizeof(err));
        if (f.audit == NULL)
            fatalx("audit log %s: %s", cfg->audit_path, err);
    }

    f.jwks = jwks_new(f.base, cfg);
    const struct httpd_limits hl = {
        .max_header_bytes = cfg->limits.max_header_bytes,
        .max_body_bytes = cfg->limits.max_body_bytes,
        .max_connections = cfg->limits.max_connections,
        .max_per_address = cfg->limits.max_connections_per_address,
        .header_timeout_ms = cfg->limits.header_timeout_ms,
        .body_timeout_ms = cfg->limits.body_timeout_ms,
        .idle_timeout_ms = cfg->limits.keepalive_timeout_ms,
        .max_output_bytes = cfg->limits.max_stream_buffer_bytes,
        .max_output_total = cfg->limits.max_buffered_bytes,
    };
    f.httpd = httpd_new(f.base, &hl);
    if (f.httpd == NULL)
        fatalx("cannot create the HTTP server");
    for (size_t i = 0; i < nl; i++) {
        struct http_listener *ctx = http_listener_new(&f, cfg->listeners[i].admin);
        if (ctx == NULL)
            fatalx("out of memory");
        f.listener[i] = ctx;
        f.nlisteners++;
        if (cfg->listeners[i].tls_cert_pem != NULL) {
            char err[256];
            struct ssl_ctx_st *tls = tls_server_ctx(
                cfg->listeners[i].tls_cert_pem, cfg->listeners[i].tls_key_pem, err, sizeof(err));
            if (tls == NULL)
                fatalx("listener %s: %s", cfg->listeners[i].address, err);
            http_listener_set_tls(ctx, tls);
        }
        if (httpd_listen(f.httpd, lfds[i], cfg->listeners[i].max_connections, http_handle,
                         cfg->listeners[i].tls_cert_pem != NULL ? http_listener_new_ssl : NULL,
                         ctx) == -1)
            fatalx("cannot accept on listener %s", cfg->listeners[i].address);
        listening_log(lfds[i], cfg->listeners[i].admin, cfg->listeners[i].tls_cert_pem != NULL);
    }
    log_info("ready listeners=%zu servers=%zu tenants=%zu", nl, cfg->nmanifests, cfg->ntenants);

    event_base_dispatch(f.base);

    /* Stop: end every session (answers every open exchange, kills every child). */
    f.draining = true;
    session_module_shutdown(&f, "mcpvisor is stopping");
    /* Let the kill messages and final answers go out and the released sessions free. */
    struct timeval flush = {0, 200000};
    event_base_loopexit(f.base, &flush);
    event_base_dispatch(f.base);
    pool_module_free();
    httpd_free(f.httpd);
    for (size_t i = 0; i < nl; i++)
        http_listener_free(f.listener[i]);
    jwks_free(f.jwks);
    audit_free(f.audit); /* after the last session's records */
    event_free(f.quota_sweep);
    quota_table_free(f.quotas);
    event_free(f.sock_ev);
    event_free(f.sock_wev);
    free(f.outq);
    event_free(f.sig_term);
    event_free(f.sig_int);
    event_free(f.sig_hup);
    event_free(f.drain_timer);
    event_free(f.keepalive);
    idmap_clear(&f.spawns, free);
    idmap_clear(&f.lingering, lingering_release); /* stopping: no more grace */
    child_env_free(&f.children);
    idmap_free(&f.pending_ids);
    event_base_free(f.base);
    log_info("stopped");
    return 0;
}
