/*
 * testchild.h — forked children for the unit tests, started clean.
 *
 * cmocka catches SIGSEGV, SIGILL, SIGBUS, SIGFPE and SIGSYS with handlers that longjmp back into
 * the test runner. A forked child that inherits them and takes one of those signals does not die:
 * it goes on running the rest of the suite as a second copy, and the parent sees neither the
 * signal nor a clean exit. Every fork in a unit test goes through test_fork(), so a child starts
 * with default dispositions and an empty mask and can only end by a signal or by _exit.
 *
 * Kernel features are probed the same way (test_probe): in such a child, so that a probe that
 * faults (int 0x80 without IA32 emulation, say) is a "no", never a crash of the suite.
 */
#ifndef MCPVISOR_TESTCHILD_H
#define MCPVISOR_TESTCHILD_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* fork(); the child has every signal at SIG_DFL and nothing blocked. */
static inline pid_t test_fork(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa;
        sigset_t none;
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        sigemptyset(&sa.sa_mask);
        for (int sig = 1; sig < NSIG; sig++)
            (void)sigaction(sig, &sa, NULL); /* EINVAL for SIGKILL, SIGSTOP and gaps */
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
    }
    return pid;
}

/* How a clean child ended: its exit code (>= 0), minus the signal that killed it, or -1000 when
 * fork or waitpid failed. */
static inline int test_child_status(int (*fn)(void))
{
    pid_t pid = test_fork();
    if (pid == -1)
        return -1000;
    if (pid == 0)
        _exit(fn());
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) == -1 && errno == EINTR)
        ;
    if (r != pid)
        return -1000;
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* A kernel feature probe: true when fn returns 0 in a clean child and the child exits 0. */
static inline bool test_probe(int (*fn)(void))
{
    return test_child_status(fn) == 0;
}

#endif
