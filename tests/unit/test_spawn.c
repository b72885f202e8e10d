/*
 * test_spawn.c — the spawner's set-up deadline (sandbox/spawn.c): a child that does not reach
 * execve within setup_timeout_ms is killed and its spawn fails alone, instead of holding the
 * spawner (and every other tenant's spawns) forever. Runs without the sandbox, as root or not.
 * Also the split form (spawn_begin / spawn_complete / spawn_abort) the spawner's loop uses: a
 * child stuck in set-up does not delay another spawn begun after it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
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

/* Reaps pid, which must end within a few seconds (SIGKILLed or exiting by itself). */
static void reap_soon(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid)
            return;
        assert_int_equal(r, 0);
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    fail_msg("child %d did not end", (int)pid);
}

static void no_child_left(void)
{
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void a_stuck_setup_does_not_delay_a_later_spawn(void **state)
{
    struct spawn_plan stuck = plain();
    stuck.setup_timeout_ms = 1500;
    stuck.before_go = stop_child;
    struct spawn_plan quick = plain();
    quick.setup_timeout_ms = 5000;
    struct spawn_pending *a, *b;
    struct spawn_result ra, rb;

    long long t0 = now_ms();
    assert_int_equal(spawn_begin(&stuck, &a, &ra), 0);
    assert_int_equal(spawn_begin(&quick, &b, &rb), 0);

    /* The spawner's loop in small: one poll over both, the timeout from the nearest deadline. */
    long long b_done = -1, a_done = -1;
    while (a != NULL || b != NULL) {
        struct pollfd pfd[2];
        struct spawn_pending *who[2];
        nfds_t n = 0;
        int timeout = -1;
        if (a != NULL) {
            pfd[n] = (struct pollfd){.fd = spawn_status_fd(a), .events = POLLIN};
            who[n++] = a;
            timeout = spawn_timeout(a);
        }
        if (b != NULL) {
            pfd[n] = (struct pollfd){.fd = spawn_status_fd(b), .events = POLLIN};
            who[n++] = b;
            int t = spawn_timeout(b);
            if (t >= 0 && (timeout < 0 || t < timeout))
                timeout = t;
        }
        int pr = poll(pfd, n, timeout);
        assert_true(pr >= 0 || errno == EINTR);
        for (nfds_t i = 0; i < n && pr > 0; i++) {
            if (pfd[i].revents == 0)
                continue;
            if (who[i] == b) {
                int r = spawn_complete(b, &rb);
                if (r == SPAWN_WAITING)
                    continue;
                assert_int_equal(r, SPAWN_DONE);
                b = NULL;
                b_done = now_ms() - t0;
            } else {
                fail_msg("the stuck child reported: %d", spawn_complete(a, &ra));
            }
        }
        if (a != NULL && spawn_timeout(a) == 0) {
            spawn_abort(a, &ra);
            a = NULL;
            a_done = now_ms() - t0;
        }
        if (b != NULL && spawn_timeout(b) == 0)
            fail_msg("the quick child did not start in time");
    }

    assert_true(b_done >= 0 && b_done < 1000);
    assert_true(a_done >= 1400 && a_done < 5000);
    assert_string_equal(ra.step, "setup");
    assert_int_equal(ra.err, ETIMEDOUT);
    assert_true(ra.pid > 0);
    reap_soon(ra.pid);

    assert_true(rb.pid > 0);
    int st;
    assert_int_equal(waitpid(rb.pid, &st, 0), rb.pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close_result(&rb);
    no_child_left();
}

static char *const argv_missing[] = {"/nonexistent/mcpvisor-test", NULL};

static void a_failed_step_completes_as_failed(void **state)
{
    struct spawn_plan p = plain();
    p.path = argv_missing[0];
    p.argv = argv_missing;
    p.setup_timeout_ms = 5000;
    struct spawn_pending *sp;
    struct spawn_result r;
    assert_int_equal(spawn_begin(&p, &sp, &r), 0);
    struct pollfd pfd = {.fd = spawn_status_fd(sp), .events = POLLIN};
    int c;
    do {
        assert_int_equal(poll(&pfd, 1, 5000), 1);
    } while ((c = spawn_complete(sp, &r)) == SPAWN_WAITING);
    assert_int_equal(c, SPAWN_FAILED);
    assert_string_equal(r.step, "exec");
    assert_int_equal(r.err, ENOENT);
    assert_true(r.pid > 0); /* ours to reap */
    reap_soon(r.pid);
    no_child_left();
}

/* The reaper got there first (the loop waits for any child): the status pipe still tells. */
static void a_child_reaped_during_setup_completes_once(void **state)
{
    struct spawn_plan p = plain();
    p.path = argv_missing[0];
    p.argv = argv_missing;
    struct spawn_pending *sp;
    struct spawn_result r;
    assert_int_equal(spawn_begin(&p, &sp, &r), 0);
    pid_t pid = spawn_pid(sp);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(spawn_reaped(sp, &r), SPAWN_FAILED);
    assert_string_equal(r.step, "exec");
    assert_int_equal(r.err, ENOENT);
    assert_int_equal(r.pid, -1); /* already reaped: nothing left to wait for */

    /* One that exec'd and exited before anyone looked: a spawn, then an exit. */
    p = plain();
    assert_int_equal(spawn_begin(&p, &sp, &r), 0);
    pid = spawn_pid(sp);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(spawn_reaped(sp, &r), SPAWN_DONE);
    assert_int_equal(r.pid, pid);
    assert_true(r.fd_stdin >= 0 && r.fd_stdout >= 0 && r.fd_stderr >= 0);
    close_result(&r);
    no_child_left();
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

/* before_go: stop the child once it has dropped the descriptors that are not its own. */
static int stop_child_after_close(void *arg, pid_t pid)
{
    for (int i = 0; i < 200 && count_fds(pid) > 3 + 5; i++)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    return kill(pid, SIGSTOP);
}

/* A child in set-up holds none of another child's pipe ends: closing a server's stdin reaches it
 * as EOF even while a later spawn is stuck. */
static void a_stuck_child_holds_no_other_childs_stdin(void **state)
{
    static char *const argv_cat[] = {"/bin/cat", NULL};
    struct spawn_plan p = plain();
    p.path = argv_cat[0];
    p.argv = argv_cat;
    struct spawn_result cat;
    assert_int_equal(spawn_start(&p, &cat), 0);

    struct spawn_plan stuck = plain();
    stuck.setup_timeout_ms = 3000;
    stuck.before_go = stop_child_after_close;
    struct spawn_pending *sp;
    struct spawn_result r;
    assert_int_equal(spawn_begin(&stuck, &sp, &r), 0);

    close(cat.fd_stdin);
    cat.fd_stdin = -1;
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 200 && got == 0; i++) {
        got = waitpid(cat.pid, &st, WNOHANG);
        if (got == 0)
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    assert_int_equal(got, cat.pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(cat.fd_stdout);
    close(cat.fd_stderr);

    spawn_abort(sp, &r);
    reap_soon(r.pid);
    no_child_left();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_child_that_reaches_exec_in_time_runs),
        cmocka_unit_test(a_child_stuck_in_setup_is_killed_at_the_deadline),
        cmocka_unit_test(a_stuck_setup_does_not_delay_a_later_spawn),
        cmocka_unit_test(a_failed_step_completes_as_failed),
        cmocka_unit_test(a_child_reaped_during_setup_completes_once),
        cmocka_unit_test(a_stuck_child_holds_no_other_childs_stdin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
