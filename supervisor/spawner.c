/*
 * spawner.c — the privileged side of privilege separation (see privsep.h for the protocol).
 *
 * Never parses network input, never allocates per message beyond the child table, and refuses
 * anything that is not exactly a known message: the front is assumed compromisable. Signals
 * arrive through a signalfd so the loop is one poll(2).
 *
 * Spawns are asynchronous: a request starts the child (spawn_begin) and the loop goes on; the
 * child's status pipe joins the poll set, and the reply (spawned or spawn_failed, by request id)
 * goes out when it exec'd, reported a failed step, died, or ran out of limits.spawn_timeout_ms.
 * A child stuck in set-up so costs only its own spawn, never another tenant's. The spawns in
 * flight are bounded (the front bounds them too); beyond the bound a request fails as "busy".
 */
#include "spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "childenv.h"
#include "log.h"
#include "plan.h"
#include "privsep.h"
#include "policy.h"
#include "spawn.h"

#define SPAWNER_MAX_CHILDREN 65536
#define SPAWNER_MAX_ENV      256
/* Spawns in set-up at once: limits.max_spawns_in_flight, and at least this. */
#define SPAWNER_MIN_PENDING 64

struct spawner_child {
    pid_t pid;
    char server[CONFIG_NAME_MAX];
    char tenant[CONFIG_NAME_MAX];
    char cgroup[512]; /* its cgroup leaf, or "" */
    pid_t server_pid; /* the server inside the sandbox (host pid), for seccomp reports */
    bool quiet;       /* a failed spawn's child, killed: reaped without a report */
};

/* A spawn between "go" and its reply. */
struct spawner_pending {
    struct spawn_pending *sp; /* NULL: a free slot */
    uint64_t req;
    char server[CONFIG_NAME_MAX];
    char tenant[CONFIG_NAME_MAX];
    char cgroup[512];
};

static const struct sandbox_features *features;
static const struct sandbox_profile *profiles; /* parallel to cfg->manifests */
static uint64_t spawn_seq;

static struct spawner_child *children;
static size_t nchildren, children_cap;

static struct spawner_pending *pending; /* pending_cap slots, allocated once */
static size_t npending, pending_cap;
static bool front_down; /* reaped: replies have nowhere to go */

static int child_add(pid_t pid, const char *server, const char *tenant, const char *cgroup,
                     pid_t server_pid, bool quiet)
{
    if (nchildren == children_cap) {
        size_t cap = children_cap ? children_cap * 2 : 64;
        if (cap > SPAWNER_MAX_CHILDREN)
            return -1;
        struct spawner_child *n = realloc(children, cap * sizeof(*n));
        if (n == NULL)
            return -1;
        children = n;
        children_cap = cap;
    }
    struct spawner_child *c = &children[nchildren++];
    c->pid = pid;
    snprintf(c->server, sizeof(c->server), "%s", server);
    snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
    snprintf(c->cgroup, sizeof(c->cgroup), "%s", cgroup);
    c->server_pid = server_pid;
    c->quiet = quiet;
    return 0;
}

static struct spawner_child *child_find(pid_t pid)
{
    for (size_t i = 0; i < nchildren; i++) {
        if (children[i].pid == pid)
            return &children[i];
    }
    return NULL;
}

static void child_remove(struct spawner_child *c)
{
    *c = children[--nchildren];
}

/* A reply to the front. A front that went away is noticed by the loop (EOF on the socket). */
static void reply(int sock, const union privsep_msg *msg, const int *fds, size_t nfds)
{
    if (front_down)
        return;
    if (privsep_send(sock, msg, fds, nfds) == -1) {
        if (errno != EPIPE && errno != ECONNRESET)
            fatal("cannot send a spawn reply to the front");
        log_warn("spawn reply lost: the front is gone");
    }
}

static void reply_failed(int sock, uint64_t req, const char *step, int err)
{
    union privsep_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.spawn_failed.type = PRIVSEP_SPAWN_FAILED;
    msg.spawn_failed.req = req;
    msg.spawn_failed.err = err;
    snprintf(msg.spawn_failed.step, sizeof(msg.spawn_failed.step), "%s", step);
    reply(sock, &msg, NULL, 0);
}

/* The child of a failed spawn (already sent SIGKILL, or already reaped: pid -1) and its leaf. */
static void failed_child(pid_t pid, const struct spawner_pending *p)
{
    if (pid > 0 && child_add(pid, p->server, p->tenant, p->cgroup, -1, true) == 0)
        return; /* reap() waits for it and releases its leaf */
    if (pid > 0) {
        while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
            ;
    }
    if (p->cgroup[0] != '\0')
        sandbox_cgroup_release(p->cgroup);
}

/* A pending spawn ended (r from spawn_complete, spawn_reaped or spawn_abort): reply, free the
 * slot. reaped: the child's pid was already waited for. */
static void pending_done(int sock, struct spawner_pending *p, int r, struct spawn_result *res,
                         bool reaped)
{
    p->sp = NULL;
    npending--;
    if (r == SPAWN_DONE &&
        child_add(res->pid, p->server, p->tenant, p->cgroup, res->server_pid, false) == -1) {
        if (!reaped)
            kill(res->pid, SIGKILL);
        close(res->fd_stdin);
        close(res->fd_stdout);
        close(res->fd_stderr);
        failed_child(reaped ? -1 : res->pid, p);
        reply_failed(sock, p->req, "table", ENOMEM);
        return;
    }
    if (r == SPAWN_DONE) {
        log_info("spawned server=%s tenant=%s pid=%d", p->server, p->tenant, (int)res->pid);
        union privsep_msg msg;
        memset(&msg, 0, sizeof(msg));
        msg.spawned.type = PRIVSEP_SPAWNED;
        msg.spawned.req = p->req;
        msg.spawned.pid = res->pid;
        int fds[3] = {res->fd_stdin, res->fd_stdout, res->fd_stderr};
        reply(sock, &msg, fds, 3);
        close(res->fd_stdin);
        close(res->fd_stdout);
        close(res->fd_stderr);
        return;
    }
    log_warn("spawn_failed server=%s tenant=%s step=%s errno=%d error=\"%s\"", p->server, p->tenant,
             res->step, res->err, strerror(res->err));
    failed_child(res->pid, p);
    reply_failed(sock, p->req, res->step, res->err);
}

static void handle_spawn(const struct config *cfg, int sock, const struct privsep_spawn *req)
{
    const struct config_manifest *m = NULL;
    const struct config_tenant *t = NULL;
    char *envp[SPAWNER_MAX_ENV];
    struct spawn_result res;
    struct spawn_pending *sp;
    const char *step = "policy";
    int err = EPERM;

    envp[0] = NULL;
    if (privsep_name_ok(req->server, sizeof(req->server)) == -1 ||
        privsep_name_ok(req->tenant, sizeof(req->tenant)) == -1)
        fatalx("front sent a spawn request with a malformed name");

    m = config_manifest_find(cfg, req->server);
    /* A shared child runs for no tenant: only a server whose manifest says "shared" has one. */
    bool shared = strcmp(req->tenant, PRIVSEP_SHARED_TENANT) == 0;
    t = shared ? NULL : config_tenant_find(cfg, req->tenant);
    if (m == NULL || (shared ? m->isolation != CONFIG_ISOLATION_SHARED
                             : t == NULL || !config_tenant_allows(t, m->name))) {
        /* A correct front never asks this: log it loudly, refuse. */
        log_warn("spawn_refused server=%s tenant=%s reason=not_allowed", req->server, req->tenant);
        goto failed;
    }
    if (npending == pending_cap) {
        log_warn("spawn_refused server=%s tenant=%s reason=busy in_setup=%zu", m->name, req->tenant,
                 npending);
        step = "busy";
        err = EAGAIN;
        goto failed;
    }
    char why[512];
    if (childenv_build(m, t, envp, SPAWNER_MAX_ENV, &step, why, sizeof(why)) == -1) {
        err = errno;
        if (why[0] != '\0')
            log_warn("%s server=%s tenant=%s %s",
                     strcmp(step, "secrets") == 0 ? "secret_refused" : "env_failed", m->name,
                     req->tenant, why);
        goto failed;
    }
    struct plan_cgroup cgx;
    struct spawn_plan plan;
    plan_build(&plan, &cgx, features, &profiles[m - cfg->manifests], m, t, envp, &cfg->limits,
               ++spawn_seq);
    int rc = spawn_begin(&plan, &sp, &res);
    childenv_free(envp); /* the child has its own copy */
    envp[0] = NULL;
    if (rc == -1) {
        step = res.step;
        err = res.err;
        log_warn("spawn_failed server=%s tenant=%s step=%s errno=%d error=\"%s\"", m->name,
                 req->tenant, res.step, res.err, strerror(res.err));
        if (cgx.path[0] != '\0') /* the child was reaped: the leaf is empty */
            sandbox_cgroup_release(cgx.path);
        goto failed;
    }
    struct spawner_pending *p = pending;
    while (p->sp != NULL)
        p++;
    p->sp = sp;
    p->req = req->req;
    snprintf(p->server, sizeof(p->server), "%s", m->name);
    snprintf(p->tenant, sizeof(p->tenant), "%s", req->tenant);
    snprintf(p->cgroup, sizeof(p->cgroup), "%s", cgx.path);
    npending++;
    return;

failed:
    childenv_free(envp);
    reply_failed(sock, req->req, step, err);
}

static struct spawner_pending *pending_find(pid_t pid)
{
    for (size_t i = 0; i < pending_cap; i++) {
        if (pending[i].sp != NULL && spawn_pid(pending[i].sp) == pid)
            return &pending[i];
    }
    return NULL;
}

/* Shutting down: every child in set-up is killed and reaped; nobody waits for a reply. */
static void abort_all_pending(void)
{
    for (size_t i = 0; i < pending_cap; i++) {
        struct spawner_pending *p = &pending[i];
        if (p->sp == NULL)
            continue;
        struct spawn_result res;
        spawn_abort(p->sp, &res);
        p->sp = NULL;
        npending--;
        while (waitpid(res.pid, NULL, 0) == -1 && errno == EINTR)
            ;
        if (p->cgroup[0] != '\0')
            sandbox_cgroup_release(p->cgroup);
    }
}

static void kill_all_children(void)
{
    for (size_t i = 0; i < nchildren; i++)
        kill(-children[i].pid, SIGKILL); /* the child leads its own session and group */
    for (size_t i = 0; i < nchildren; i++)
        kill(children[i].pid, SIGKILL);
    for (size_t i = 0; i < nchildren; i++) {
        while (waitpid(children[i].pid, NULL, 0) == -1 && errno == EINTR)
            ;
        if (children[i].cgroup[0] != '\0')
            sandbox_cgroup_release(children[i].cgroup);
    }
    nchildren = 0;
}

/* Reaps everything; reports our children's exits; returns true if the front exited. */
static bool reap(int sock, pid_t front, int *front_status)
{
    bool front_gone = false;
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p <= 0)
            break;
        if (p == front) {
            front_gone = true;
            front_down = true;
            *front_status = status;
            continue;
        }
        struct spawner_child *c = child_find(p);
        if (c == NULL) {
            /* Died in set-up, or exec'd and died before its status pipe was read: its spawn
             * completes now, once (it is reaped: nothing waits for it again). */
            struct spawner_pending *pp = pending_find(p);
            if (pp == NULL)
                continue;
            struct spawn_result res;
            pending_done(sock, pp, spawn_reaped(pp->sp, &res), &res, true);
            c = child_find(p);
            if (c == NULL)
                continue;
        }
        if (c->quiet) {
            if (c->cgroup[0] != '\0')
                sandbox_cgroup_release(c->cgroup);
            child_remove(c);
            continue;
        }
        union privsep_msg msg;
        memset(&msg, 0, sizeof(msg));
        msg.exited.type = PRIVSEP_EXITED;
        msg.exited.pid = p;
        msg.exited.syscall_nr = -1;
        /* The sandbox init reports the server's death by signal N as exit 128+N. */
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        if (sig == 0 && WEXITSTATUS(status) > SPAWN_SIGNAL_BASE &&
            WEXITSTATUS(status) < SPAWN_SIGNAL_BASE + 65)
            sig = WEXITSTATUS(status) - SPAWN_SIGNAL_BASE;
        if (sig != 0) {
            msg.exited.signal = sig;
            if (sig == SIGSYS) {
                /* Only the kernel's record for this very server counts: a record of another
                 * process (another tenant's, or a grandchild) must not be attributed to it. */
                int nr = -1;
                /* The kernel prints its record a few ms after the kill: look a few times
                 * (bounded; only on a SIGSYS death, and the spawner serves no network). */
                for (int tries = 0; c->server_pid > 0 && nr < 0 && tries < 5; tries++) {
                    if (tries > 0)
                        nanosleep(&(struct timespec){0, 2000000}, NULL);
                    nr = sandbox_seccomp_killer(c->server_pid);
                }
                msg.exited.syscall_nr = nr;
                const char *name = nr >= 0 ? sandbox_syscall_name(nr) : NULL;
                log_warn("seccomp_violation server=%s tenant=%s pid=%d syscall=\"%s\" nr=%d",
                         c->server, c->tenant, (int)p, name != NULL ? name : "unknown", nr);
            }
            log_info("child_exited server=%s tenant=%s pid=%d signal=%d", c->server, c->tenant,
                     (int)p, sig);
        } else {
            msg.exited.status = WEXITSTATUS(status);
            log_info("child_exited server=%s tenant=%s pid=%d status=%d", c->server, c->tenant,
                     (int)p, WEXITSTATUS(status));
        }
        if (c->cgroup[0] != '\0')
            sandbox_cgroup_release(c->cgroup);
        child_remove(c);
        if (!front_gone && privsep_send(sock, &msg, NULL, 0) == -1 && errno != EPIPE &&
            errno != ECONNRESET)
            log_warn("cannot report child exit to the front pid=%d", (int)p);
    }
    return front_gone;
}

int spawner_bundle_memfd(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *bundle = config_bundle_build(&config_source_fs, path, &len, err, errlen);
    if (bundle == NULL)
        return -1;
    int fd = memfd_create("mcpvisor-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd == -1) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        free(bundle);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, bundle + off, len - off);
        if (w == -1 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "write configuration bundle: %s", strerror(errno));
            goto fail;
        }
        off += (size_t)w;
    }
    /* Sealed: the front reads exactly what the parent validated. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == -1 ||
        lseek(fd, 0, SEEK_SET) == -1) {
        snprintf(err, errlen, "seal configuration bundle: %s", strerror(errno));
        goto fail;
    }
    OPENSSL_cleanse(bundle, len); /* it may hold TLS keys */
    free(bundle);
    return fd;
fail:
    OPENSSL_cleanse(bundle, len);
    free(bundle);
    close(fd);
    return -1;
}

/* SIGHUP: re-read and re-validate everything; hand the front the new bundle, or keep the old
 * one when the new configuration is invalid (an operator's typo never takes the service down). */
int spawner_audit_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat st;
    if (fd == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    return fd;
}

/* SIGHUP also reopens the audit log (logrotate renamed it): the front continues the chain in
 * the new file. A failure keeps the front on the old one. */
static void reopen_audit(int sock, const char *audit_path)
{
    char err[512];
    int fd = spawner_audit_open(audit_path, err, sizeof(err));
    if (fd == -1) {
        log_error("audit_reopen_failed error=\"%s\" note=\"still writing the previous file\"", err);
        return;
    }
    union privsep_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.audit_fd.type = PRIVSEP_AUDIT_FD;
    if (privsep_send(sock, &msg, &fd, 1) == -1)
        log_error("audit reopen: cannot reach the front");
    close(fd);
}

static void reload(int sock, const char *path)
{
    char err[CONFIG_ERR_MAX];
    int fd = spawner_bundle_memfd(path, err, sizeof(err));
    if (fd == -1) {
        log_error("reload_refused error=\"%s\" note=\"the running configuration stays\"", err);
        return;
    }
    union privsep_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.reload.type = PRIVSEP_RELOAD;
    if (privsep_send(sock, &msg, &fd, 1) == -1)
        log_error("reload: cannot reach the front");
    close(fd);
}

int spawner_run(const struct config *cfg, int sock, pid_t front, const char *path,
                const struct sandbox_features *feat, const struct sandbox_profile *prof)
{
    features = feat;
    profiles = prof;
    sigset_t mask;
    int front_status = 0;
    bool stopping = false;
    bool front_reaped = false;

    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1)
        fatal("sigprocmask");
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd == -1)
        fatal("signalfd");

    pending_cap = cfg->limits.max_spawns_in_flight > SPAWNER_MIN_PENDING
                      ? cfg->limits.max_spawns_in_flight
                      : SPAWNER_MIN_PENDING;
    pending = calloc(pending_cap, sizeof(*pending));
    struct pollfd *pfd = calloc(pending_cap + 2, sizeof(*pfd));
    size_t *slot = calloc(pending_cap + 2, sizeof(*slot));
    if (pending == NULL || pfd == NULL || slot == NULL)
        fatal("spawner tables");

    for (;;) {
        /* The front, the signals, and the status pipe of every spawn in set-up; the timeout is
         * the nearest set-up deadline. */
        pfd[0] = (struct pollfd){.fd = sock, .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
        nfds_t n = 2;
        int timeout = -1;
        for (size_t i = 0; i < pending_cap; i++) {
            if (pending[i].sp == NULL)
                continue;
            pfd[n] = (struct pollfd){.fd = spawn_status_fd(pending[i].sp), .events = POLLIN};
            slot[n++] = i;
            int t = spawn_timeout(pending[i].sp);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
        }
        if (poll(pfd, n, timeout) == -1) {
            if (errno == EINTR)
                continue;
            fatal("poll");
        }
        for (nfds_t i = 2; i < n; i++) {
            struct spawner_pending *p = &pending[slot[i]];
            if (pfd[i].revents == 0 || p->sp == NULL)
                continue;
            struct spawn_result res;
            int r = spawn_complete(p->sp, &res);
            if (r != SPAWN_WAITING)
                pending_done(sock, p, r, &res, false);
        }
        for (size_t i = 0; i < pending_cap; i++) {
            struct spawner_pending *p = &pending[i];
            if (p->sp == NULL || spawn_timeout(p->sp) != 0)
                continue;
            struct spawn_result res;
            spawn_abort(p->sp, &res);
            pending_done(sock, p, SPAWN_FAILED, &res, false);
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                    /* The front drains sessions and exits; we follow it. */
                    stopping = true;
                    kill(front, SIGTERM);
                } else if (si.ssi_signo == SIGHUP) {
                    reload(sock, path);
                    if (cfg->audit_path != NULL)
                        reopen_audit(sock, cfg->audit_path);
                }
            }
            if (reap(sock, front, &front_status)) {
                front_reaped = true;
                break;
            }
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            union privsep_msg msg;
            int fds[3];
            size_t nfds;
            int r = privsep_recv(sock, &msg, fds, &nfds);
            if (r == 0 || (r == -1 && errno != EAGAIN && errno != EINTR)) {
                if (r == -1)
                    log_error("front broke the privsep protocol: %s", strerror(errno));
                break;
            }
            if (r == 1) {
                if (msg.type == PRIVSEP_SPAWN) {
                    handle_spawn(cfg, sock, &msg.spawn);
                } else if (msg.type == PRIVSEP_KILL) {
                    struct spawner_child *c = child_find(msg.kill.pid);
                    if (c != NULL)
                        kill(-c->pid, SIGKILL);
                    /* else: already reaped, or not ours — never signal a stranger */
                } else {
                    log_error("front sent an unexpected message type=%u", msg.type);
                    break;
                }
            }
        }
    }

    /* The front is gone (or misbehaved): nothing may run unsupervised. */
    size_t killed = npending;
    for (size_t i = 0; i < nchildren; i++)
        killed += !children[i].quiet; /* a failed spawn's child was killed already */
    abort_all_pending();
    kill_all_children();
    free(pfd);
    free(slot);
    free(pending);
    pending = NULL;
    pending_cap = 0;
    if (!front_reaped) {
        if (!stopping)
            kill(front, SIGKILL);
        while (waitpid(front, &front_status, 0) == -1 && errno == EINTR)
            ;
    }
    int code = 1;
    if (stopping && WIFEXITED(front_status) && WEXITSTATUS(front_status) == 0)
        code = 0;
    log_info("spawner_exit children_killed=%zu code=%d", killed, code);
    return code;
}
