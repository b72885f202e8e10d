/*
 * spawn.c — fork, confine, execve. Runs in the privileged spawner; the code after fork is
 * async-signal-safe only (no malloc, no stdio, no locks), because the spawner's memory is copied
 * as it was at fork time.
 *
 * Step order (the sandbox layer inserts namespaces, mounts, ids, Landlock and seccomp between
 * "stdio" and "fds" — see SANDBOX-NOTES.md):
 *   pdeathsig → sync (parent alive?) → signals → setsid → stdio → fds → exec
 * PDEATHSIG before the sync read: if the parent died between fork and prctl, the sync pipe reads
 * EOF instead of "go" and the child leaves (PDEATHSIG alone is racy).
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct spawn_status {
    char step[16];
    int err;
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

/* Marks every fd >= 3 close-on-exec; the status pipe already is, so it closes on exec. */
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

static void child_main(const struct spawn_plan *plan, pid_t parent, int sync_fd, int status_fd,
                       int in_fd, int out_fd, int err_fd)
{
    char go;
    ssize_t n;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
        child_fail(status_fd, "pdeathsig");
    do {
        n = read(sync_fd, &go, 1);
    } while (n == -1 && errno == EINTR);
    if (n != 1 || go != 'g' || getppid() != parent) {
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
    int src[3] = {in_fd, out_fd, err_fd};
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
    if (cloexec_from(3) == -1)
        child_fail(status_fd, "fds");

    execve(plan->path, plan->argv, plan->envp);
    child_fail(status_fd, "exec");
}

static int nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl == -1 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int spawn_start(const struct spawn_plan *plan, struct spawn_result *res)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int sync_p[2] = {-1, -1}, status[2] = {-1, -1};
    int rc = -1;
    pid_t parent = getpid();
    struct spawn_status st;

    memset(res, 0, sizeof(*res));
    res->pid = -1;
    res->fd_stdin = res->fd_stdout = res->fd_stderr = -1;

    if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 || pipe2(errp, O_CLOEXEC) == -1 ||
        pipe2(sync_p, O_CLOEXEC) == -1 || pipe2(status, O_CLOEXEC) == -1) {
        res->err = errno;
        memcpy(res->step, "pipe", 5);
        goto out;
    }

    pid_t pid = fork();
    if (pid == -1) {
        res->err = errno;
        memcpy(res->step, "fork", 5);
        goto out;
    }
    if (pid == 0) {
        close(status[0]);
        close(sync_p[1]);
        child_main(plan, parent, sync_p[0], status[1], in[0], out[1], errp[1]);
        _exit(SPAWN_EXIT_FAILED);
    }

    close(status[1]);
    status[1] = -1;
    close(sync_p[0]);
    sync_p[0] = -1;
    if (write(sync_p[1], "g", 1) != 1) {
        res->err = errno;
        memcpy(res->step, "sync", 5);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto out;
    }

    /* EOF on the status pipe means execve closed it: the program runs. */
    ssize_t n;
    do {
        n = read(status[0], &st, sizeof(st));
    } while (n == -1 && errno == EINTR);
    if (n != 0) {
        if (n == (ssize_t)sizeof(st)) {
            st.step[sizeof(st.step) - 1] = '\0';
            memcpy(res->step, st.step, sizeof(res->step));
            res->err = st.err;
        } else {
            memcpy(res->step, "status", 7);
            res->err = n == -1 ? errno : EPROTO;
        }
        waitpid(pid, NULL, 0);
        goto out;
    }

    if (nonblock(in[1]) == -1 || nonblock(out[0]) == -1 || nonblock(errp[0]) == -1) {
        res->err = errno;
        memcpy(res->step, "nonblock", 9);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto out;
    }
    res->pid = pid;
    res->fd_stdin = in[1];
    res->fd_stdout = out[0];
    res->fd_stderr = errp[0];
    in[1] = out[0] = errp[0] = -1;
    rc = 0;
out:
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
