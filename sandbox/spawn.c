/*
 * spawn.c — clone, confine, execve. Runs in the privileged spawner; the code after clone is
 * async-signal-safe only (no malloc, no stdio, no locks), because the spawner's memory is copied
 * as it was at clone time and everything it needs was prepared before.
 *
 * Step order (DESIGN.md "Sandbox", SANDBOX-NOTES.md A.5), each checked, each failure reported as
 * {step, errno} before _exit:
 *   pdeathsig → sync → signals → setsid → stdio → hostname → lo → mounts → pivot_root →
 *   rlimits → caps (bounding, securebits) → ids → caps verified empty → no_new_privs →
 *   landlock → init fork → fds → seccomp → exec
 * The namespaces (mount, pid, ipc, uts, cgroup, net unless "host"; user when unprivileged) come
 * from clone itself, so the child is pid 1 of its pid namespace: it stays as a tiny init that
 * reaps, and forks the server, which becomes pid 2. PDEATHSIG comes before the sync read: if the
 * spawner died between clone and prctl, the sync pipe reads EOF instead of "go".
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

int spawn_start(const struct spawn_plan *plan, struct spawn_result *res)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int sync_p[2] = {-1, -1}, status[2] = {-1, -1};
    int rc = -1;
    pid_t pid = -1;
    struct spawn_status st;
    char *stack = NULL;

    memset(res, 0, sizeof(*res));
    res->pid = -1;
    res->fd_stdin = res->fd_stdout = res->fd_stderr = -1;

#define FAIL(stepname)                                                                             \
    do {                                                                                           \
        res->err = errno;                                                                          \
        snprintf(res->step, sizeof(res->step), "%s", stepname);                                    \
        goto out;                                                                                  \
    } while (0)

    if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1 ||
        pipe2(sync_p, O_CLOEXEC) == -1 || pipe2(status, O_CLOEXEC) == -1)
        FAIL("pipe");

    stack = malloc(SPAWN_STACK);
    if (stack == NULL)
        FAIL("stack");
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
    if (pid == -1)
        FAIL("clone");

    close(status[1]);
    status[1] = -1;
    close(sync_p[0]);
    sync_p[0] = -1;
    if (plan->sandbox && plan->userns && write_maps(pid, plan) == -1)
        goto kill_child_userns;
    if (plan->before_go != NULL && plan->before_go(plan->before_go_arg, pid) == -1) {
        res->err = errno;
        snprintf(res->step, sizeof(res->step), "cgroup");
        goto kill_child;
    }
    if (write(sync_p[1], "g", 1) != 1) {
        res->err = errno;
        snprintf(res->step, sizeof(res->step), "sync");
        goto kill_child;
    }

    /* EOF on the status pipe means execve closed it: the program runs. A child stuck in set-up
     * (a hung mount source, a stopped process) must not stop the spawner: it gets a deadline. */
    ssize_t n;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (plan->setup_timeout_ms > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long spent =
                (long long)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
            long long left = (long long)plan->setup_timeout_ms - spent;
            struct pollfd pfd = {.fd = status[0], .events = POLLIN};
            int pr = poll(&pfd, 1, left > 0 ? (int)left : 0);
            if (pr == -1 && errno == EINTR)
                continue;
            if (pr == 0) {
                res->err = ETIMEDOUT;
                snprintf(res->step, sizeof(res->step), "setup");
                goto kill_child;
            }
        }
        n = read(status[0], &st, sizeof(st));
        if (n == -1 && errno == EINTR)
            continue;
        break;
    }
    if (n != 0) {
        if (n == (ssize_t)sizeof(st)) {
            st.step[sizeof(st.step) - 1] = '\0';
            memcpy(res->step, st.step, sizeof(res->step));
            res->err = st.err;
        } else {
            snprintf(res->step, sizeof(res->step), "status");
            res->err = n == -1 ? errno : EPROTO;
        }
        waitpid(pid, NULL, 0);
        goto out;
    }

    if (nonblock(in[1]) == -1 || nonblock(out[0]) == -1 || nonblock(errp[0]) == -1) {
        res->err = errno;
        snprintf(res->step, sizeof(res->step), "nonblock");
        goto kill_child;
    }
    res->pid = pid;
    res->server_pid = plan->sandbox ? server_of(pid) : pid;
    res->fd_stdin = in[1];
    res->fd_stdout = out[0];
    res->fd_stderr = errp[0];
    in[1] = out[0] = errp[0] = -1;
    rc = 0;
    goto out;

kill_child_userns:
    res->err = errno;
    snprintf(res->step, sizeof(res->step), "userns");
kill_child:
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
out:
#undef FAIL
    free(stack);
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
