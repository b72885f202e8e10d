/*
 * test_spawn.c — the spawner's set-up deadline (sandbox/spawn.c): a child that does not reach
 * execve within setup_timeout_ms is killed and its spawn fails alone, instead of holding the
 * spawner (and every other tenant's spawns) forever. Runs without the sandbox, as root or not.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spawn.h"

static char *const argv_true[] = {"/bin/true", NULL};
static char *const envp_none[] = {NULL};

static struct spawn_plan plain(void)
{
    struct spawn_plan p;
    memset(&p, 0, sizeof(p));
    p.path = "/bin/true";
    p.argv = argv_true;
    p.envp = envp_none;
    p.sandbox = false;
    p.uid = getuid();
    p.gid = getgid();
    p.outer_uid = getuid();
    p.outer_gid = getgid();
    return p;
}

/* before_go: freeze the child before it is told to go, as a hung set-up step would. */
static int stop_child(void *arg, pid_t pid)
{
    return kill(pid, SIGSTOP);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_result(struct spawn_result *r)
{
    close(r->fd_stdin);
    close(r->fd_stdout);
    close(r->fd_stderr);
}

static void a_child_that_reaches_exec_in_time_runs(void **state)
{
    struct spawn_plan p = plain();
    p.setup_timeout_ms = 5000;
    struct spawn_result r;
    assert_int_equal(spawn_start(&p, &r), 0);
    assert_true(r.pid > 0);
    int st;
    assert_int_equal(waitpid(r.pid, &st, 0), r.pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close_result(&r);
}

static void a_child_stuck_in_setup_is_killed_at_the_deadline(void **state)
{
    struct spawn_plan p = plain();
    p.setup_timeout_ms = 300;
    p.before_go = stop_child;
    struct spawn_result r;
    long long t0 = now_ms();
    assert_int_equal(spawn_start(&p, &r), -1);
    long long took = now_ms() - t0;
    assert_string_equal(r.step, "setup");
    assert_int_equal(r.err, ETIMEDOUT);
    assert_true(took >= 250 && took < 5000);
    /* killed and reaped: no child of ours is left */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_child_that_reaches_exec_in_time_runs),
        cmocka_unit_test(a_child_stuck_in_setup_is_killed_at_the_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
