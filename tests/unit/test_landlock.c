/*
 * test_landlock.c — the Landlock layer (sandbox/landlock.c): a child restricted to its rules
 * must lose everything else on the filesystem even as root, and keep what the rules grant.
 *
 * Each restriction runs in a forked child (Landlock cannot be undone) which reports the first
 * failed expectation as its exit code; the parent names it. Skipped, with the reason, when the
 * kernel has no Landlock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "landlock.h"
#include "testchild.h"

static int abi;
static int use_abi;      /* the ABI a child restricts with (each of 1..abi in turn) */
static char inside[64];  /* granted read-write */
static char outside[64]; /* not granted; holds a file made before the restriction */
static char outside_file[128];
static const char *etc_file; /* a host file nobody grants */

static const char *const child_failures[] = {
    [0] = "ok",
    [1] = "PR_SET_NO_NEW_PRIVS failed",
    [2] = "sandbox_landlock_restrict failed",
    [3] = "could not create and write a file in the read-write dir",
    [4] = "could not read back the file in the read-write dir",
    [5] = "could not mkdir/rename/unlink/rmdir in the read-write dir",
    [6] = "a host file outside the rules was readable (want EACCES)",
    [7] = "could create a file under read-only /usr (want EACCES or EROFS)",
    [8] = "could not execute /usr/bin/true",
    [9] = "could truncate a file outside the rules (want EACCES)",
    [10] = "could read a file outside the rules (want EACCES)",
    [11] = "could list / (want EACCES)",
    [12] = "could open a file in /usr for writing (want EACCES)",
    [13] = "restrict without no_new_privs did not fail with EPERM",
    [14] = "could not read the single file granted by a file rule",
    [15] = "a file rule's neighbour was readable (want EACCES)",
    [16] = "a read-only file rule let the file be opened for writing",
    [17] = "an empty rule list still let /usr/bin/true be opened",
    [18] = "a relative rule path was not refused with EINVAL",
};

static int group_setup(void **state)
{
    (void)state;
    abi = sandbox_landlock_abi();
    snprintf(inside, sizeof(inside), "/tmp/mcpvisor-ll-in-XXXXXX");
    snprintf(outside, sizeof(outside), "/tmp/mcpvisor-ll-out-XXXXXX");
    if (mkdtemp(inside) == NULL || mkdtemp(outside) == NULL)
        return -1;
    snprintf(outside_file, sizeof(outside_file), "%s/data", outside);
    int fd = open(outside_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1 || write(fd, "0123456789", 10) != 10)
        return -1;
    close(fd);
    etc_file = access("/etc/hostname", R_OK) == 0 ? "/etc/hostname" : "/etc/passwd";
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char p[128];
    unlink(outside_file);
    rmdir(outside);
    snprintf(p, sizeof(p), "%s/f", inside);
    unlink(p);
    rmdir(inside);
    return 0;
}

static bool need_landlock(void)
{
    if (abi == 0) {
        print_message("SKIP: Landlock is not available on this kernel (landlock_create_ruleset "
                      "version probe failed: not built in or not in lsm=)\n");
        return false;
    }
    return true;
}

/* Runs fn in a forked child and asserts it exits 0; otherwise names the failed expectation. */
static void run_child(int (*fn)(void))
{
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0)
        _exit(fn());
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    int code = WEXITSTATUS(st);
    if (code != 0) {
        size_t n = sizeof(child_failures) / sizeof(child_failures[0]);
        print_message("child: %s\n", code > 0 && (size_t)code < n && child_failures[code] != NULL
                                         ? child_failures[code]
                                         : "unknown failure");
    }
    assert_int_equal(code, 0);
}

static bool denied(int rc)
{
    return rc == -1 && errno == EACCES;
}

static int restricted_view(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        return 1;
    const struct sandbox_landlock_rule rules[] = {
        {inside, true},
        {"/usr", false},
        {"/nonexistent/mcpvisor-landlock", true}, /* missing: skipped, not an error */
    };
    if (sandbox_landlock_restrict(rules, 3, use_abi) == -1)
        return 2;

    char f[128], d[128], d2[128];
    snprintf(f, sizeof(f), "%s/f", inside);
    snprintf(d, sizeof(d), "%s/d", inside);
    snprintf(d2, sizeof(d2), "%s/d2", inside);
    int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1 || write(fd, "hello", 5) != 5)
        return 3;
    close(fd);
    char buf[16] = {0};
    fd = open(f, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || read(fd, buf, sizeof(buf)) != 5 || memcmp(buf, "hello", 5) != 0)
        return 4;
    close(fd);
    if (mkdir(d, 0700) == -1 || rename(d, d2) == -1 || rmdir(d2) == -1)
        return 5;

    if (!denied(open(etc_file, O_RDONLY | O_CLOEXEC)))
        return 6;
    fd = open("/usr/.mcpvisor-landlock-probe", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd != -1) {
        close(fd);
        unlink("/usr/.mcpvisor-landlock-probe");
        return 7;
    }
    if (errno != EACCES && errno != EROFS)
        return 7;
    fd = open("/usr/bin/true", O_WRONLY | O_CLOEXEC);
    if (fd != -1) {
        close(fd);
        return 12;
    }
    if (errno != EACCES && errno != ETXTBSY)
        return 12;

    pid_t pid = fork();
    if (pid == -1)
        return 8;
    if (pid == 0) {
        char *const argv[] = {"true", NULL};
        char *const envp[] = {NULL};
        execve("/usr/bin/true", argv, envp);
        _exit(99);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 8;

    /* truncate(2) by path is only restricted from ABI 3 on. */
    if (use_abi >= 3 && !denied(truncate(outside_file, 0)))
        return 9;
    if (!denied(open(outside_file, O_RDONLY | O_CLOEXEC)))
        return 10;
    if (!denied(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)))
        return 11;
    return 0;
}

static int file_rule(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        return 1;
    /* A read-only rule on a file: only file rights apply (else the kernel says EINVAL). */
    const struct sandbox_landlock_rule rules[] = {{etc_file, false}};
    if (sandbox_landlock_restrict(rules, 1, abi) == -1)
        return 2;
    int fd = open(etc_file, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return 14;
    close(fd);
    const char *other = strcmp(etc_file, "/etc/passwd") == 0 ? "/etc/group" : "/etc/passwd";
    if (!denied(open(other, O_RDONLY | O_CLOEXEC)))
        return 15;
    /* Root could write it without Landlock; opening is the whole probe (nothing is written). */
    fd = open(etc_file, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd != -1) {
        close(fd);
        return 16;
    }
    return errno == EACCES ? 0 : 16;
}

static int writable_file_rule(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        return 1;
    const struct sandbox_landlock_rule rules[] = {{outside_file, true}};
    if (sandbox_landlock_restrict(rules, 1, abi) == -1)
        return 2;
    int fd = open(outside_file, O_RDWR | O_CLOEXEC);
    if (fd == -1)
        return 3;
    close(fd);
    return 0;
}

static int without_nnp(void)
{
    const struct sandbox_landlock_rule rules[] = {{"/usr", false}};
    errno = 0;
    if (sandbox_landlock_restrict(rules, 1, abi) != -1 || errno != EPERM)
        return 13;
    return 0;
}

static int no_rules(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        return 1;
    if (sandbox_landlock_restrict(NULL, 0, abi) == -1)
        return 2;
    return denied(open("/usr/bin/true", O_RDONLY | O_CLOEXEC)) ? 0 : 17;
}

static int relative_path(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
        return 1;
    const struct sandbox_landlock_rule rules[] = {{"usr", false}};
    errno = 0;
    if (sandbox_landlock_restrict(rules, 1, abi) != -1 || errno != EINVAL)
        return 18;
    return 0;
}

static void abi_is_probed(void **state)
{
    (void)state;
    assert_true(abi >= 0);
    print_message("landlock ABI on this kernel: %d\n", abi);
}

/* Argument errors are refused before any syscall, so they are safe to check in-process. */
static void bad_arguments_are_refused(void **state)
{
    (void)state;
    struct sandbox_landlock_rule rules[SANDBOX_LANDLOCK_MAX_RULES + 1];
    for (size_t i = 0; i < SANDBOX_LANDLOCK_MAX_RULES + 1; i++)
        rules[i] = (struct sandbox_landlock_rule){"/usr", false};
    errno = 0;
    assert_int_equal(sandbox_landlock_restrict(rules, 1, 0), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    errno = 0;
    assert_int_equal(sandbox_landlock_restrict(rules, SANDBOX_LANDLOCK_MAX_RULES + 1, 1), -1);
    assert_int_equal(errno, E2BIG);
    errno = 0;
    assert_int_equal(sandbox_landlock_restrict(NULL, 1, 1), -1);
    assert_int_equal(errno, EINVAL);
}

static void child_sees_only_its_rules(void **state)
{
    (void)state;
    if (!need_landlock())
        skip();
    use_abi = abi;
    run_child(restricted_view);
}

/* An older ABI's ruleset must still work on a newer kernel (the spawner records one ABI at
 * start-up); each level's handled set and rule rights are accepted and enforced. */
static void every_abi_level_up_to_the_kernels_works(void **state)
{
    (void)state;
    if (!need_landlock())
        skip();
    for (use_abi = 1; use_abi <= abi; use_abi++) {
        print_message("ABI %d\n", use_abi);
        run_child(restricted_view);
    }
}

static void file_rule_grants_one_file(void **state)
{
    (void)state;
    if (!need_landlock())
        skip();
    run_child(file_rule);
    run_child(writable_file_rule);
}

static void restrict_requires_no_new_privs(void **state)
{
    (void)state;
    if (!need_landlock())
        skip();
    run_child(without_nnp);
}

static void no_rules_deny_everything(void **state)
{
    (void)state;
    if (!need_landlock())
        skip();
    run_child(no_rules);
    run_child(relative_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(abi_is_probed),
        cmocka_unit_test(bad_arguments_are_refused),
        cmocka_unit_test(child_sees_only_its_rules),
        cmocka_unit_test(every_abi_level_up_to_the_kernels_works),
        cmocka_unit_test(file_rule_grants_one_file),
        cmocka_unit_test(restrict_requires_no_new_privs),
        cmocka_unit_test(no_rules_deny_everything),
    };
    return cmocka_run_group_tests_name("landlock", tests, group_setup, group_teardown);
}
