/*
 * spawn.c — clone, confine, execve. Runs in the privileged spawner; the code after clone is
 * async-signal-safe only (no malloc, no stdio, no locks), because the spawner's memory is copied
 * as it was at clone time and everything it needs was prepared before.
 *
 * Step order (DESIGN.md "Sandbox", SANDBOX-NOTES.md A.5), each checked, each failure reported as
 * {step, errno} before _exit:
 *   pdeathsig → other fds closed → sync → signals → setsid → stdio → hostname → lo → mounts →
 * pivot_root → rlimits → caps (bounding, securebits) → ids → caps verified empty → no_new_privs →
 *   landlock → init fork → fds → seccomp → exec
 * The namespaces (mount, pid, ipc, uts, cgroup, net unless "host"; user when unprivileged) come
 * from clone itself, so the child is pid 1 of its pid namespace: it stays as a tiny init that
 * reaps, and forks the server, which becomes pid 2. PDEATHSIG comes before the sync read: if the
 * spawner died between clone and prctl, the sync pipe reads EOF instead of "go".
 *
 * The parent side does not wait for the set-up (spawn_begin, then spawn_complete when the status
 * pipe is readable): the spawner has other spawns in flight meanwhile, which is why a new child
 * first closes every descriptor that is not its own.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "util.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define SPAWN_STACK (256 * 1024)

struct spawn_status {
    char step[16];
    int err;
};

struct child_args {
    const struct spawn_plan *plan;
    int sync_fd, status_fd, in_fd, out_fd, err_fd;
};

static void child_fail(int status_fd, const char *step) __attribute__((noreturn));
static void child_fail(int status_fd, const char *step)
{
    struct spawn_status st;
    memset(&st, 0, sizeof(st));
    st.err = errno;
    size_t n = strlen(step);
    memcpy(st.step, step, n < sizeof(st.step) - 1 ? n : sizeof(st.step) - 1);
    ssize_t w = write(status_fd, &st, sizeof(st));
    (void)w;
    _exit(SPAWN_EXIT_FAILED);
}

/* Marks every fd >= lowfd close-on-exec; the status pipe already is, so it closes on exec. */
static int cloexec_from(int lowfd)
{
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return -1;
    rlim_t max = rl.rlim_cur == RLIM_INFINITY ? 65536 : rl.rlim_cur;
    for (rlim_t fd = (rlim_t)lowfd; fd < max; fd++) {
        int fl = fcntl((int)fd, F_GETFD);
        if (fl != -1 && (fl & FD_CLOEXEC) == 0 && fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC) == -1)
            return -1;
    }
    return 0;
}

/* Closes fds lo..hi (inclusive) without allocating. */
static void close_between(unsigned lo, unsigned hi)
{
    if (lo > hi || syscall(SYS_close_range, lo, hi, 0U) == 0)
        return;
    struct rlimit rl;
    rlim_t max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max = rl.rlim_cur;
    for (rlim_t fd = lo; fd <= hi && fd < max; fd++)
        close((int)fd);
}

/* Closes every fd >= 3 but the n in keep: the spawner's other spawns in flight must not have
 * their pipe ends (a stdin write end above all) held open by this child while it sets up. */
static void close_others(int *keep, int n)
{
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    }
    unsigned lo = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < (int)lo)
            continue;
        if ((unsigned)keep[i] > lo)
            close_between(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_between(lo, ~0U);
}

/* Joins root + path into buf without allocating. */
static int join(char *buf, size_t len, const char *root, const char *path)
{
    int n = snprintf(buf, len, "%s%s", root, path);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* mkdir -p for a path inside the new root (the root itself exists). */
static int mkdirs(char *path, size_t rootlen)
{
    for (char *p = path + rootlen + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r == -1 && errno != EEXIST)
            return -1;
    }
    if (mkdir(path, 0755) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

/* The mount point of a bind: created in the skeleton or a tmpfs; inside another bind it is the
 * host's own file, which the policy checked exists, so nothing is created there. */
static int make_target(char *target, size_t rootlen, bool is_dir)
{
    struct stat st;
    if (lstat(target, &st) == 0)
        return 0;
    char *slash = strrchr(target, '/');
    if (is_dir)
        return mkdirs(target, rootlen);
    if (slash != NULL && (size_t)(slash - target) > rootlen) {
        *slash = '\0';
        int r = mkdirs(target, rootlen);
        *slash = '/';
        if (r == -1)
            return -1;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1 && errno != EEXIST)
        return -1;
    if (fd != -1)
        close(fd);
    return 0;
}

/* A read-only bind keeps the source's own nosuid/nodev/noexec and adds nosuid and nodev. */
static int bind_mount(const char *src, const char *dst, bool ro)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) == -1)
        return -1;
    unsigned long fl = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0);
    return mount(NULL, dst, NULL, fl, NULL);
}

static int build_root(const struct spawn_plan *plan)
{
    char buf[512];
    const char *root = plan->newroot;
    size_t rootlen = strlen(root);

    /* Nothing we mount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
        return -1;
    if (mount("mcpvisor", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") == -1)
        return -1;
    for (size_t i = 0; i < plan->nmounts; i++) {
        const struct spawn_mount *m = &plan->mounts[i];
        if (join(buf, sizeof(buf), root, m->path) == -1)
            return -1;
        switch (m->kind) {
        case SPAWN_MOUNT_RO:
        case SPAWN_MOUNT_RW:
            if (make_target(buf, rootlen, m->is_dir) == -1 ||
                bind_mount(m->path, buf, m->kind == SPAWN_MOUNT_RO) == -1)
                return -1;
            break;
        case SPAWN_MOUNT_TMPFS:
            if (mkdirs(buf, rootlen) == -1 ||
                mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") == -1)
                return -1;
            break;
        case SPAWN_MOUNT_LINK: {
            char *slash = strrchr(buf, '/');
            if (slash != NULL && (size_t)(slash - buf) > rootlen) {
                *slash = '\0';
                int r = mkdirs(buf, rootlen);
                *slash = '/';
                if (r == -1)
                    return -1;
            }
            if (symlink(m->target, buf) == -1 && errno != EEXIST)
                return -1;
            break;
        }
        }
    }

    /* /dev: only the harmless character devices, bound from the host; no tty. */
    static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                       "/dev/urandom"};
    if (join(buf, sizeof(buf), root, "/dev") == -1 || mkdirs(buf, rootlen) == -1 ||
        mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") == -1)
        return -1;
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        if (join(buf, sizeof(buf), root, devs[i]) == -1 || make_target(buf, rootlen, false) == -1 ||
            bind_mount(devs[i], buf, false) == -1)
            return -1;
    }
    static const char *const links[][2] = {{"/dev/fd", "/proc/self/fd"},
                                           {"/dev/stdin", "/proc/self/fd/0"},
                                           {"/dev/stdout", "/proc/self/fd/1"},
                                           {"/dev/stderr", "/proc/self/fd/2"}};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        if (join(buf, sizeof(buf), root, links[i][0]) == -1 || symlink(links[i][1], buf) == -1)
            return -1;
    }
    if (join(buf, sizeof(buf), root, "/dev/shm") == -1 || mkdirs(buf, rootlen) == -1 ||
        mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m") == -1)
        return -1;

    /* A /proc of our own pid namespace: the host's processes are not in it. */
    if (join(buf, sizeof(buf), root, "/proc") == -1 || mkdirs(buf, rootlen) == -1 ||
        mount("proc", buf, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
        return -1;

    /* pivot_root onto the new root and detach the old one: the host tree is gone. */
    if (chdir(root) == -1 || syscall(SYS_pivot_root, ".", ".") == -1 ||
        umount2(".", MNT_DETACH) == -1 || chdir("/") == -1)
        return -1;
    /* The skeleton itself is read-only: the server writes only where the manifest allows. */
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) == -1)
        return -1;
    return 0;
}

/* Brings lo up in a fresh network namespace (everything else stays absent). */
static int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s == -1)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r != -1) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return r;
}

static int set_limits(const struct spawn_rlimits *rl)
{
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_CORE, &zero) == -1) /* SIGSYS kills must not dump core */
        return -1;
#define LIMIT(flag, res, val)                                                                      \
    if (rl->flag) {                                                                                \
        struct rlimit l = {(val), (val)};                                                          \
        if (setrlimit(res, &l) == -1)                                                              \
            return -1;                                                                             \
    }
    LIMIT(set_cpu, RLIMIT_CPU, rl->cpu_s)
    LIMIT(set_nofile, RLIMIT_NOFILE, rl->nofile)
    LIMIT(set_nproc, RLIMIT_NPROC, rl->nproc)
    LIMIT(set_fsize, RLIMIT_FSIZE, rl->fsize)
    LIMIT(set_as, RLIMIT_AS, rl->as_bytes)
#undef LIMIT
    return 0;
}

/* pid 1 of the sandbox: reap everything, leave with the server's status. */
static char *title_area;
static size_t title_len;

void spawn_set_title_area(char *start, size_t len)
{
    title_area = start;
    title_len = len;
}

#define INIT_TITLE "mcpvisor-sandbox-init"

/* In the sandbox init: its argv memory is the daemon's; a neutral name goes there instead. */
static void init_title(void)
{
    if (title_area == NULL || title_len < sizeof(INIT_TITLE))
        return;
    memset(title_area, 0, title_len);
    memcpy(title_area, INIT_TITLE, sizeof(INIT_TITLE));
}

static void init_loop(pid_t server) __attribute__((noreturn));
static void init_loop(pid_t server)
{
    for (;;) {
        int status;
        pid_t p = waitpid(-1, &status, 0);
        if (p == -1 && errno == EINTR)
            continue;
        if (p == -1)
            _exit(SPAWN_EXIT_FAILED);
        if (p != server)
            continue;
        if (WIFSIGNALED(status))
            _exit(SPAWN_SIGNAL_BASE + WTERMSIG(status));
        _exit(WEXITSTATUS(status));
    }
}

static int child_main(void *arg)
{
    const struct child_args *a = arg;
    const struct spawn_plan *plan = a->plan;
    int status_fd = a->status_fd;
    char go;
    ssize_t n;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
        child_fail(status_fd, "pdeathsig");
    int keep[] = {a->sync_fd, status_fd, a->in_fd, a->out_fd, a->err_fd};
    close_others(keep, 5);
    do {
        n = read(a->sync_fd, &go, 1);
    } while (n == -1 && errno == EINTR);
    if (n != 1 || go != 'g') {
        errno = ECHILD;
        child_fail(status_fd, "sync");
    }

    /* The spawner blocks and ignores signals; a server must start with the defaults. */
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* EINVAL for the libc-reserved ones is fine */
    }
    if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
        child_fail(status_fd, "signals");

    /* No controlling terminal: no TIOCSTI injection into the daemon's tty. */
    if (setsid() == -1)
        child_fail(status_fd, "setsid");

    /* Move the pipe ends out of 0..2 first, so dup2 never sees source == target (which would
     * keep O_CLOEXEC set on it). */
    int src[3] = {a->in_fd, a->out_fd, a->err_fd};
    for (int i = 0; i < 3; i++) {
        if (src[i] < 3) {
            int moved = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
            if (moved == -1)
                child_fail(status_fd, "stdio");
            src[i] = moved;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(src[i], i) == -1)
            child_fail(status_fd, "stdio");
    }

    if (plan->sandbox) {
        if (sethostname("mcpvisor", 8) == -1)
            child_fail(status_fd, "hostname");
        if (!plan->network && loopback_up() == -1)
            child_fail(status_fd, "network");
        if (build_root(plan) == -1)
            child_fail(status_fd, "mounts");
    }
    if (set_limits(&plan->rl) == -1)
        child_fail(status_fd, "rlimits");
    if (plan->sandbox) {
        if (sandbox_caps_lock(plan->cap_last_cap) == -1)
            child_fail(status_fd, "caps");
        /* In a user namespace setgroups is denied (by design): keep the mapped ids as they are. */
        if (plan->userns ? (setresgid(plan->gid, plan->gid, plan->gid) == -1 ||
                            setresuid(plan->uid, plan->uid, plan->uid) == -1)
                         : sandbox_drop_ids(plan->uid, plan->gid) == -1)
            child_fail(status_fd, "ids");
        if (sandbox_caps_verify_empty(plan->cap_last_cap) == -1)
            child_fail(status_fd, "caps-verify");
        /* Changing ids clears the parent-death signal: set it again, then make sure the spawner
         * did not die in between (its end of the sync pipe is open until our exec). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
            child_fail(status_fd, "pdeathsig");
        int fl = fcntl(a->sync_fd, F_GETFL);
        if (fl == -1 || fcntl(a->sync_fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
            read(a->sync_fd, &go, 1) != -1 || errno != EAGAIN) {
            errno = ECHILD;
            child_fail(status_fd, "sync");
        }
    }
    close(a->sync_fd);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        child_fail(status_fd, "no_new_privs");
    if (plan->sandbox && plan->landlock_abi > 0 &&
        sandbox_landlock_restrict(plan->landlock, plan->nlandlock, plan->landlock_abi) == -1)
        child_fail(status_fd, "landlock");

    if (plan->sandbox) {
        /* We are pid 1 of the new pid namespace: stay as its init, run the server as pid 2.
         * This init is a copy of the spawner that never execs: the server must not read its
         * memory or environment through /proc/1 (execve makes the server dumpable again). */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
            child_fail(status_fd, "dumpable");
        pid_t server = fork();
        if (server == -1)
            child_fail(status_fd, "init");
        if (server > 0) {
            /* Hold nothing at all: the status pipe must close on the server's exec alone, its
             * stdin must reach EOF when the daemon closes it, and no descriptor of the spawner
             * (its control socket least of all) may stay in a process running as the tenant. */
            if (syscall(SYS_close_range, 0U, ~0U, 0U) == -1) {
                for (int fd = 0; fd < 1024; fd++)
                    close(fd);
            }
            init_title();
            init_loop(server);
        }
        /* The server dies with its init (SIGKILL to the whole namespace). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
            child_fail(status_fd, "pdeathsig");
    }

    if (cloexec_from(3) == -1)
        child_fail(status_fd, "fds");
    /* Last: the filter need not allow anything the steps above used. */
    if (plan->seccomp != NULL && sandbox_seccomp_apply(plan->seccomp) == -1)
        child_fail(status_fd, "seccomp");
    execve(plan->path, plan->argv, plan->envp);
    child_fail(status_fd, "exec");
    return SPAWN_EXIT_FAILED;
}

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl == -1 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* userns mode: map our own uid and gid onto themselves (setgroups denied first, as required). */
static int write_maps(pid_t pid, const struct spawn_plan *plan)
{
    char path[64], line[64];
    int fd, n;
    struct {
        const char *file;
        unsigned id;
    } maps[] = {{"setgroups", 0}, {"uid_map", plan->outer_uid}, {"gid_map", plan->outer_gid}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, maps[i].file);
        if (i == 0)
            n = snprintf(line, sizeof(line), "deny");
        else
            n = snprintf(line, sizeof(line), "%u %u 1", maps[i].id, maps[i].id);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd == -1)
            return -1;
        if (write(fd, line, (size_t)n) != n) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        close(fd);
    }
    return 0;
}

/* The host pid of the sandbox init's only child (the server, running now that it exec'ed). */
static pid_t server_of(pid_t init)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)init, (int)init);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    return v > 0 && end != buf ? (pid_t)v : -1;
}

struct spawn_pending {
    pid_t pid;
    bool sandbox;
    int sync_w;   /* held until exec: the child reads EOF here if the spawner died */
    int status_r; /* non-blocking; EOF once the child exec'd */
    int in_w, out_r, err_r;
    int64_t deadline_ms; /* CLOCK_MONOTONIC; 0: none */
};

static void set_fail(struct spawn_result *res, const char *step, int err)
{
    res->err = err;
    snprintf(res->step, sizeof(res->step), "%s", step);
}

static void result_init(struct spawn_result *res)
{
    memset(res, 0, sizeof(*res));
    res->pid = -1;
    res->fd_stdin = res->fd_stdout = res->fd_stderr = -1;
}

static void pending_free(struct spawn_pending *p)
{
    int fds[] = {p->sync_w, p->status_r, p->in_w, p->out_r, p->err_r};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (fds[i] != -1)
            close(fds[i]);
    }
    free(p);
}

int spawn_begin(const struct spawn_plan *plan, struct spawn_pending **pending,
                struct spawn_result *res)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int sync_p[2] = {-1, -1}, status[2] = {-1, -1};
    int rc = -1;
    pid_t pid = -1;
    char *stack = NULL;
    struct spawn_pending *p = NULL;

    result_init(res);
    *pending = NULL;
    if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1 ||
        pipe2(sync_p, O_CLOEXEC) == -1 || pipe2(status, O_CLOEXEC) == -1) {
        set_fail(res, "pipe", errno);
        goto out;
    }
    p = calloc(1, sizeof(*p));
    stack = malloc(SPAWN_STACK);
    if (p == NULL || stack == NULL) {
        set_fail(res, "stack", ENOMEM);
        goto out;
    }
    struct child_args args = {plan, sync_p[0], status[1], in[0], out[1], errp[1]};
    int flags = SIGCHLD;
    if (plan->sandbox) {
        flags |= CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
        if (!plan->network)
            flags |= CLONE_NEWNET;
        if (plan->userns)
            flags |= CLONE_NEWUSER;
    }
    pid = clone(child_main, stack + SPAWN_STACK, flags, &args);
    if (pid == -1) {
        set_fail(res, "clone", errno);
        goto out;
    }

    /* The child has its own copy of memory and descriptors: its ends and stack go now. */
    int *child_ends[] = {&in[0], &out[1], &errp[1], &sync_p[0], &status[1]};
    for (size_t i = 0; i < sizeof(child_ends) / sizeof(child_ends[0]); i++) {
        close(*child_ends[i]);
        *child_ends[i] = -1;
    }
    /* Quick writes to /proc and cgroupfs: the child waits for "go" and does nothing meanwhile. */
    if (plan->sandbox && plan->userns && write_maps(pid, plan) == -1) {
        set_fail(res, "userns", errno);
        goto kill_child;
    }
    if (plan->before_go != NULL && plan->before_go(plan->before_go_arg, pid) == -1) {
        set_fail(res, "cgroup", errno);
        goto kill_child;
    }
    if (nonblock(status[0]) == -1) {
        set_fail(res, "nonblock", errno);
        goto kill_child;
    }
    /* One byte into an empty pipe: never blocks. */
    if (write(sync_p[1], "g", 1) != 1) {
        set_fail(res, "sync", errno);
        goto kill_child;
    }
    p->pid = pid;
    p->sandbox = plan->sandbox;
    p->sync_w = sync_p[1];
    p->status_r = status[0];
    p->in_w = in[1];
    p->out_r = out[0];
    p->err_r = errp[0];
    sync_p[1] = status[0] = in[1] = out[0] = errp[0] = -1;
    p->deadline_ms = plan->setup_timeout_ms > 0 ? util_mono_ms() + plan->setup_timeout_ms : 0;
    *pending = p;
    p = NULL;
    rc = 0;
    goto out;

kill_child:
    /* Still before "go" (or at it): the child is blocked on the sync pipe and dies at once. */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
        ;
out:
    free(stack);
    free(p);
    for (int i = 0; i < 2; i++) {
        if (in[i] != -1)
            close(in[i]);
        if (out[i] != -1)
            close(out[i]);
        if (errp[i] != -1)
            close(errp[i]);
        if (sync_p[i] != -1)
            close(sync_p[i]);
        if (status[i] != -1)
            close(status[i]);
    }
    return rc;
}

int spawn_status_fd(const struct spawn_pending *p)
{
    return p->status_r;
}

pid_t spawn_pid(const struct spawn_pending *p)
{
    return p->pid;
}

int spawn_timeout(const struct spawn_pending *p)
{
    if (p->deadline_ms == 0)
        return -1;
    int64_t left = p->deadline_ms - util_mono_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* The status pipe read n (st: the record); frees p. reaped: the caller already waited for it. */
static int finish(struct spawn_pending *p, ssize_t n, int read_errno, const struct spawn_status *st,
                  bool reaped, struct spawn_result *res)
{
    if (n == 0) {
        /* EOF: execve closed the pipe, the program runs (or ran, if reaped). */
        if (nonblock(p->in_w) == -1 || nonblock(p->out_r) == -1 || nonblock(p->err_r) == -1) {
            set_fail(res, "nonblock", errno);
            goto failed;
        }
        res->pid = p->pid;
        /* A reaped pid may already belong to another process: do not look at its /proc. */
        res->server_pid = !p->sandbox ? p->pid : reaped ? -1 : server_of(p->pid);
        res->fd_stdin = p->in_w;
        res->fd_stdout = p->out_r;
        res->fd_stderr = p->err_r;
        p->in_w = p->out_r = p->err_r = -1;
        pending_free(p);
        return SPAWN_DONE;
    }
    if (n == (ssize_t)sizeof(*st)) {
        memcpy(res->step, st->step, sizeof(res->step));
        res->step[sizeof(res->step) - 1] = '\0';
        res->err = st->err;
    } else if (n == -1 && read_errno == EAGAIN) {
        set_fail(res, "setup", ECHILD); /* reaped, yet its pipe still open: not ours to trust */
    } else {
        set_fail(res, "status", n == -1 ? read_errno : EPROTO);
    }
failed:
    /* A failed child is exiting anyway; the kill makes sure (it may be stopped or frozen). */
    if (!reaped) {
        kill(p->pid, SIGKILL);
        res->pid = p->pid;
    }
    pending_free(p);
    return SPAWN_FAILED;
}

static ssize_t read_status(int fd, struct spawn_status *st, int *err)
{
    ssize_t n;
    do {
        n = read(fd, st, sizeof(*st));
    } while (n == -1 && errno == EINTR);
    *err = n == -1 ? errno : 0;
    return n;
}

int spawn_complete(struct spawn_pending *p, struct spawn_result *res)
{
    struct spawn_status st;
    int err;
    result_init(res);
    ssize_t n = read_status(p->status_r, &st, &err);
    if (n == -1 && err == EAGAIN)
        return SPAWN_WAITING;
    return finish(p, n, err, &st, false, res);
}

int spawn_reaped(struct spawn_pending *p, struct spawn_result *res)
{
    struct spawn_status st;
    int err;
    result_init(res);
    ssize_t n = read_status(p->status_r, &st, &err);
    return finish(p, n, err, &st, true, res);
}

void spawn_abort(struct spawn_pending *p, struct spawn_result *res)
{
    result_init(res);
    set_fail(res, "setup", ETIMEDOUT);
    kill(p->pid, SIGKILL);
    res->pid = p->pid;
    pending_free(p);
}

int spawn_start(const struct spawn_plan *plan, struct spawn_result *res)
{
    struct spawn_pending *p;
    if (spawn_begin(plan, &p, res) == -1)
        return -1;
    int r;
    for (;;) {
        struct pollfd pfd = {.fd = spawn_status_fd(p), .events = POLLIN};
        int pr = poll(&pfd, 1, spawn_timeout(p));
        if (pr == -1 && errno == EINTR)
            continue;
        if (pr == 0) {
            spawn_abort(p, res);
            r = SPAWN_FAILED;
            break;
        }
        r = spawn_complete(p, res);
        if (r != SPAWN_WAITING)
            break;
    }
    if (r == SPAWN_DONE)
        return 0;
    if (res->pid > 0) {
        while (waitpid(res->pid, NULL, 0) == -1 && errno == EINTR)
            ;
        res->pid = -1;
    }
    return -1;
}
