/*
 * test_caps.c — identity and capabilities (sandbox/caps.c): after lock + id drop + verify, a
 * child started as root holds no capability in any set and cannot become root again.
 *
 * The privileged cases run in a forked child (the changes are irreversible) which reports the
 * first failed expectation as its exit code; the parent names it. They are skipped, with the
 * reason, unless the test runs as root with CAP_SETPCAP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "testchild.h"

#define NOBODY 65534

static int last_cap;

static const char *const child_failures[] = {
    [0] = "ok",
    [1] = "sandbox_caps_lock failed",
    [2] = "securebits are not NOROOT|NO_CAP_AMBIENT_RAISE with all four locks",
    [3] = "sandbox_drop_ids failed",
    [4] = "sandbox_caps_verify_empty failed",
    [5] = "cannot read /proc/self/status",
    [6] = "a Cap* line of /proc/self/status is not all zero",
    [7] = "setuid(0) did not fail with EPERM",
    [8] = "setresgid(0, 0, 0) did not fail with EPERM",
    [9] = "supplementary groups remain",
    [10] = "getresuid/getresgid do not show 65534 everywhere",
    [11] = "verify_empty passed while the bounding set was full",
    [12] = "the securebits could be changed back after the lock",
    [13] = "an ambient capability could be raised",
    [14] = "not all five Cap* lines were found in /proc/self/status",
    [15] = "setgroups() could add a group back",
    [16] = "test set-up: could not add groups and an inheritable/ambient capability",
};

static int group_setup(void **state)
{
    (void)state;
    last_cap = sandbox_cap_last_cap();
    return 0;
}

/* Root with CAP_SETPCAP effective, or a printed reason to skip. */
static bool need_root(void)
{
    if (geteuid() != 0) {
        print_message("SKIP: needs root (dropping the bounding set and ids needs privileges)\n");
        return false;
    }
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, data) == -1 ||
        (data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP)) == 0) {
        print_message("SKIP: root without CAP_SETPCAP (an outer sandbox removed it)\n");
        return false;
    }
    return true;
}

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

/* Returns the number of Cap* lines that are all zero, -1 if one is not, -2 on read error. */
static int zero_cap_lines(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -2;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -2;
    buf[n] = '\0';
    static const char *const keys[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
    int found = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *p = strstr(buf, keys[i]);
        if (p == NULL)
            continue;
        p += strlen(keys[i]);
        p += strspn(p, " \t");
        if (strspn(p, "0") != 16 || p[16] != '\n')
            return -1;
        found++;
    }
    return found;
}

/*
 * Leaves the state a careless spawner might pass on: supplementary groups, an inheritable and an
 * ambient capability (setresuid alone would clear neither the groups nor the inheritable set).
 */
static int dirty_root(void)
{
    gid_t groups[] = {4, 27};
    if (setgroups(2, groups) == -1)
        return -1;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, data) == -1)
        return -1;
    data[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].inheritable |= CAP_TO_MASK(CAP_NET_BIND_SERVICE);
    if (syscall(SYS_capset, &hdr, data) == -1)
        return -1;
    return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0);
}

static int full_drop(void)
{
    if (dirty_root() == -1)
        return 16;
    if (sandbox_caps_lock(last_cap) == -1)
        return 1;
    unsigned long want = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                         SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                         SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) != (int)want)
        return 2;
    if (prctl(PR_SET_SECUREBITS, 0, 0, 0, 0) != -1)
        return 12;
    if (sandbox_drop_ids(NOBODY, NOBODY) == -1)
        return 3;
    if (sandbox_caps_verify_empty(last_cap) == -1)
        return 4;

    int z = zero_cap_lines();
    if (z == -2)
        return 5;
    if (z == -1)
        return 6;
    if (z != 5)
        return 14;

    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 || ru != NOBODY ||
        eu != NOBODY || su != NOBODY || rg != NOBODY || eg != NOBODY || sg != NOBODY)
        return 10;
    if (getgroups(0, NULL) != 0)
        return 9;

    errno = 0;
    if (setuid(0) != -1 || errno != EPERM)
        return 7;
    errno = 0;
    if (setresgid(0, 0, 0) != -1 || errno != EPERM)
        return 8;
    gid_t g = 0;
    if (setgroups(1, &g) != -1)
        return 15;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != -1)
        return 13;
    return 0;
}

/* Still root, never locked: the bounding set is full, so the check must refuse. */
static int verify_with_bounding_set(void)
{
    errno = 0;
    if (sandbox_caps_verify_empty(last_cap) != -1 || errno != EPERM)
        return 11;
    return 0;
}

static void cap_last_cap_is_the_kernels(void **state)
{
    (void)state;
    assert_in_range(last_cap, CAP_SETFCAP, 63);
    char buf[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        assert_true(n > 0);
        assert_int_equal(last_cap, (int)strtol(buf, NULL, 10));
    }
    /* Every capability up to it is one the kernel knows; the next one is not. */
    assert_true(prctl(PR_CAPBSET_READ, (unsigned long)last_cap, 0, 0, 0) >= 0);
    assert_int_equal(prctl(PR_CAPBSET_READ, (unsigned long)last_cap + 1, 0, 0, 0), -1);
}

/* These are refused before any syscall, so they are safe to check in-process. */
static void root_and_unchanged_ids_are_refused(void **state)
{
    (void)state;
    const struct {
        uid_t uid;
        gid_t gid;
    } bad[] = {{0, NOBODY}, {NOBODY, 0}, {(uid_t)-1, NOBODY}, {NOBODY, (gid_t)-1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_int_equal(sandbox_drop_ids(bad[i].uid, bad[i].gid), -1);
        assert_int_equal(errno, EINVAL);
    }
    errno = 0;
    assert_int_equal(sandbox_caps_lock(64), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(sandbox_caps_verify_empty(-1), -1);
    assert_int_equal(errno, EINVAL);
}

static void dropped_child_holds_no_capability(void **state)
{
    (void)state;
    if (!need_root())
        skip();
    run_child(full_drop);
}

static void verify_refuses_a_full_bounding_set(void **state)
{
    (void)state;
    if (!need_root())
        skip();
    run_child(verify_with_bounding_set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cap_last_cap_is_the_kernels),
        cmocka_unit_test(root_and_unchanged_ids_are_refused),
        cmocka_unit_test(dropped_child_holds_no_capability),
        cmocka_unit_test(verify_refuses_a_full_bounding_set),
    };
    return cmocka_run_group_tests_name("caps", tests, group_setup, NULL);
}
