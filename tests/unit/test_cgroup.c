/*
 * test_cgroup.c — cgroup v2 detection and leaves (sandbox/cgroup.c). A wrong detection either
 * leaves memory_mb unenforced while claiming otherwise, or breaks every spawn; a wrong leaf puts
 * a server's limits on the wrong cgroup.
 *
 * Most cases run against a fake hierarchy in a temporary directory (plain files where the kernel
 * would provide cgroup.controllers and friends). One case uses the real cgroup v2 mount, as root,
 * in a throw-away cgroup, to check that a child really moves in and that release kills it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cgroup.h"
#include "testchild.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static char base[64]; /* the fake hierarchy's mount point, fresh for each test */
static char selfcg[128];

static int rm_entry(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(p) : unlink(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/mcpvisor-cg-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    chmod(base, 0755);
    snprintf(selfcg, sizeof(selfcg), "%s/self-cgroup", base);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* base + rel, in a rotating static buffer (several may be live in one expression). */
static const char *at(const char *rel)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s%s", base, rel);
    return b;
}

static void put(const char *rel, const char *content)
{
    int fd = open(at(rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd != -1);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
}

static const char *get(const char *rel)
{
    static char buf[512];
    int fd = open(at(rel), O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

/* A fake cgroup directory: the files a kernel would show. type NULL: the real root (no
 * cgroup.type there). */
static void fake_cgroup(const char *rel, const char *controllers, const char *type)
{
    char p[256];
    if (strcmp(rel, "") != 0)
        assert_int_equal(mkdir(at(rel), 0755), 0);
    snprintf(p, sizeof(p), "%s/cgroup.controllers", rel);
    put(p, controllers);
    snprintf(p, sizeof(p), "%s/cgroup.subtree_control", rel);
    put(p, "");
    snprintf(p, sizeof(p), "%s/cgroup.procs", rel);
    put(p, "");
    if (type != NULL) {
        snprintf(p, sizeof(p), "%s/cgroup.type", rel);
        put(p, type);
    }
}

static bool mark_delegated(const char *rel)
{
    if (setxattr(at(rel), "trusted.delegate", "1", 1, 0) == 0)
        return true;
    return setxattr(at(rel), "user.delegate", "1", 1, 0) == 0;
}

static void self_in(const char *rel)
{
    char line[256];
    snprintf(line, sizeof(line), "12:pids:/x\n1:name=systemd:/x\n0::%s\n", rel);
    put("/self-cgroup", line);
}

static void assert_has(const char *s, const char *part)
{
    if (strstr(s, part) == NULL)
        fail_msg("\"%s\" does not mention \"%s\"", s, part);
}

static void this_machine_is_reported(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    sandbox_cgroup_detect(&cg);
    if (cg.available) {
        print_message("cgroup v2 available: root %s\n", cg.root);
        assert_true(cg.root[0] == '/');
        assert_true(cg.memory && cg.pids);
    } else {
        print_message("cgroup v2 not available: %s\n", cg.why);
        assert_true(strlen(cg.why) > 20);
        assert_has(cg.why, "cgroup");
        assert_string_equal(cg.root, "");
    }
}

static void no_cgroup2_mount(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    self_in("/");
    sandbox_cgroup_detect_at(&cg, NULL, selfcg);
    assert_false(cg.available);
    assert_has(cg.why, "no cgroup v2 hierarchy is mounted");

    sandbox_cgroup_detect_at(&cg, at("/missing"), selfcg);
    assert_false(cg.available);
    assert_has(cg.why, "no cgroup v2 hierarchy at");
    assert_has(cg.why, "/missing");
}

static void no_cgroup2_line_in_proc_self_cgroup(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "memory pids", NULL);
    put("/self-cgroup", "4:memory:/a\n1:name=systemd:/a\n");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    assert_false(cg.available);
    assert_has(cg.why, "0::");
}

/* why ends up inside quoted log values: a hostile cgroup name must not close the quote. */
static void why_never_holds_double_quotes(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "memory pids", NULL);
    self_in("/x\" injected=\"1");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    assert_false(cg.available);
    assert_has(cg.why, "is not visible");
    assert_null(strchr(cg.why, '"'));
}

/* This machine's case: a hybrid host where memory and pids stay on cgroup v1. */
static void no_memory_or_pids_controller(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "hugetlb\n", NULL);
    self_in("/");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    assert_false(cg.available);
    assert_false(cg.memory);
    assert_false(cg.pids);
    assert_has(cg.why, "no memory, pids controller");
    assert_has(cg.why, "(cgroup.controllers: hugetlb)");
    assert_null(strchr(cg.why, '"'));
    assert_null(get("/mcpvisor-children/cgroup.subtree_control")); /* nothing was prepared */

    put("/cgroup.controllers", "cpu io memory\n");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    assert_false(cg.available);
    assert_true(cg.memory);
    assert_true(cg.cpu);
    assert_has(cg.why, "no pids controller");
}

/* Controllers are there, but the cgroup was not delegated: root could write anyway, which is
 * exactly why it must not (systemd owns it). Files read-only so a non-root run sees the same. */
static void controllers_present_but_not_delegated(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "cpu memory pids", NULL);
    assert_int_equal(mkdir(at("/system.slice"), 0755), 0);
    fake_cgroup("/system.slice/mcpvisor.service", "cpu memory pids\n", "domain\n");
    chmod(at("/system.slice/mcpvisor.service/cgroup.subtree_control"), 0444);
    chmod(at("/system.slice/mcpvisor.service/cgroup.procs"), 0444);
    self_in("/system.slice/mcpvisor.service");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    assert_false(cg.available);
    assert_true(cg.memory && cg.pids && cg.cpu);
    assert_has(cg.why, "not delegated");
    assert_has(cg.why, "cgroup.subtree_control");
    assert_has(cg.why, "/system.slice/mcpvisor.service");
    assert_null(get("/system.slice/mcpvisor.service/mcpvisor-children/cgroup.subtree_control"));
    assert_null(get("/system.slice/mcpvisor.service/mcpvisor-supervisor/cgroup.procs"));
}

/* The detection result, from a child running as nobody, through a pipe. */
static void detect_as_nobody(struct sandbox_cgroup *cg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0) {
        struct sandbox_cgroup c;
        if (setgroups(0, NULL) == -1 || setresgid(65534, 65534, 65534) == -1 ||
            setresuid(65534, 65534, 65534) == -1)
            _exit(1);
        sandbox_cgroup_detect_at(&c, base, selfcg);
        _exit(write(p[1], &c, sizeof(c)) == (ssize_t)sizeof(c) ? 0 : 1);
    }
    close(p[1]);
    assert_int_equal(read(p[0], cg, sizeof(*cg)), (ssize_t)sizeof(*cg));
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Without root the kernel's own delegation model decides: files we may write. */
static void unprivileged_needs_writable_files(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("SKIP: needs root to switch to an unprivileged uid\n");
        skip();
    }
    struct sandbox_cgroup cg;
    fake_cgroup("", "memory pids", NULL);
    self_in("/");
    detect_as_nobody(&cg);
    assert_false(cg.available);
    assert_has(cg.why, "not writable");

    /* Delegated by ownership (chown, as systemd does for User= units with Delegate=yes). */
    fake_cgroup("/user.service", "memory pids", "domain");
    self_in("/user.service");
    static const char *const owned[] = {"/user.service", "/user.service/cgroup.procs",
                                        "/user.service/cgroup.subtree_control"};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(chown(at(owned[i]), 65534, 65534), 0);
    detect_as_nobody(&cg);
    if (!cg.available)
        fail_msg("not available: %s", cg.why);
    assert_string_equal(cg.root, at("/user.service/mcpvisor-children"));
}

/* Delegate=yes: we sit in the delegated cgroup itself, so we move into a leaf of it first. */
static void delegated_cgroup_is_prepared(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "cpuset cpu io memory hugetlb pids rdma misc", NULL);
    assert_int_equal(mkdir(at("/system.slice"), 0755), 0);
    fake_cgroup("/system.slice/mcpvisor.service", "cpu io memory pids\n", "domain\n");
    if (!mark_delegated("/system.slice/mcpvisor.service")) {
        print_message("SKIP: cannot set a delegate xattr on %s\n", base);
        skip();
    }
    self_in("/system.slice/mcpvisor.service");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    if (!cg.available)
        fail_msg("not available: %s", cg.why);
    assert_string_equal(cg.why, "");
    assert_true(cg.memory && cg.pids && cg.cpu);
    assert_string_equal(cg.root, at("/system.slice/mcpvisor.service/mcpvisor-children"));

    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    assert_string_equal(get("/system.slice/mcpvisor.service/mcpvisor-supervisor/cgroup.procs"),
                        pid);
    assert_string_equal(get("/system.slice/mcpvisor.service/cgroup.subtree_control"),
                        "+memory +pids");
    assert_string_equal(
        get("/system.slice/mcpvisor.service/mcpvisor-children/cgroup.subtree_control"),
        "+memory +pids");
}

/* DelegateSubgroup=supervisor: systemd already put us in a leaf of the delegated cgroup. */
static void delegated_parent_gets_a_sibling_tree(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_cgroup("", "memory pids", NULL);
    fake_cgroup("/mcpvisor.service", "memory pids", "domain");
    fake_cgroup("/mcpvisor.service/supervisor", "", "domain");
    put("/mcpvisor.service/cgroup.subtree_control", "memory\n"); /* one already enabled */
    if (!mark_delegated("/mcpvisor.service")) {
        print_message("SKIP: cannot set a delegate xattr on %s\n", base);
        skip();
    }
    self_in("/mcpvisor.service/supervisor");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    if (!cg.available)
        fail_msg("not available: %s", cg.why);
    assert_string_equal(cg.root, at("/mcpvisor.service/mcpvisor-children"));
    assert_string_equal(get("/mcpvisor.service/cgroup.subtree_control"), "+pids");
    assert_null(get("/mcpvisor.service/supervisor/mcpvisor-supervisor/cgroup.procs"));
    assert_null(get("/mcpvisor.service/mcpvisor-supervisor/cgroup.procs"));
}

/* The real root is exempt from "no internal processes": nothing moves. */
static void real_root_is_used_in_place(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("SKIP: the real root cgroup needs root\n");
        skip();
    }
    struct sandbox_cgroup cg;
    fake_cgroup("", "cpu memory pids", NULL);
    put("/cgroup.subtree_control", "cpu memory pids");
    self_in("/");
    sandbox_cgroup_detect_at(&cg, base, selfcg);
    if (!cg.available)
        fail_msg("not available: %s", cg.why);
    assert_string_equal(cg.root, at("/mcpvisor-children"));
    assert_string_equal(get("/cgroup.subtree_control"), "cpu memory pids"); /* not rewritten */
    assert_null(get("/mcpvisor-supervisor/cgroup.procs"));
}

/* A ready-made cg on the fake tree, as detection would leave it. */
static void fake_available(struct sandbox_cgroup *cg)
{
    memset(cg, 0, sizeof(*cg));
    assert_int_equal(mkdir(at("/children"), 0755), 0);
    cg->available = true;
    cg->memory = cg->pids = true;
    snprintf(cg->root, sizeof(cg->root), "%s", at("/children"));
}

static void enter_writes_limits_then_the_pid(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    fake_available(&cg);
    char leaf[512];
    assert_int_equal(
        sandbox_cgroup_enter(&cg, "acme", "invoices", 7, 512, 64, 4242, leaf, sizeof(leaf)), 0);
    assert_string_equal(leaf, at("/children/acme/invoices-7"));
    assert_string_equal(get("/children/acme/cgroup.subtree_control"), "+memory +pids");
    assert_string_equal(get("/children/acme/invoices-7/memory.max"), "536870912");
    assert_string_equal(get("/children/acme/invoices-7/memory.swap.max"), "0");
    assert_string_equal(get("/children/acme/invoices-7/pids.max"), "64");
    assert_string_equal(get("/children/acme/invoices-7/memory.oom.group"), "1");
    assert_string_equal(get("/children/acme/invoices-7/cgroup.procs"), "4242");

    /* No limits asked: the leaf still exists (kill on release) but no limit file is written. */
    assert_int_equal(
        sandbox_cgroup_enter(&cg, "acme", "echo", UINT64_MAX, 0, 0, 4243, leaf, sizeof(leaf)), 0);
    assert_string_equal(leaf, at("/children/acme/echo-18446744073709551615"));
    assert_null(get("/children/acme/echo-18446744073709551615/memory.max"));
    assert_null(get("/children/acme/echo-18446744073709551615/pids.max"));
    assert_string_equal(get("/children/acme/echo-18446744073709551615/cgroup.procs"), "4243");

    /* Release on a fake tree writes cgroup.kill and never kills pids from a plain file. */
    sandbox_cgroup_release(at("/children/acme/invoices-7"));
    assert_string_equal(get("/children/acme/invoices-7/cgroup.kill"), "1");
}

static void enter_refuses_what_it_cannot_do(void **state)
{
    (void)state;
    struct sandbox_cgroup cg;
    char leaf[512];
    memset(&cg, 0, sizeof(cg));
    errno = 0;
    assert_int_equal(sandbox_cgroup_enter(&cg, "t", "s", 1, 0, 0, 42, leaf, sizeof(leaf)), -1);
    assert_int_equal(errno, EOPNOTSUPP);

    fake_available(&cg);
    static const char *const bad[] = {"", ".", "..", "../x", "a/b", ".hidden", "a\nb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        assert_int_equal(sandbox_cgroup_enter(&cg, bad[i], "s", 1, 0, 0, 42, leaf, sizeof(leaf)),
                         -1);
        assert_int_equal(errno, EINVAL);
        errno = 0;
        assert_int_equal(sandbox_cgroup_enter(&cg, "t", bad[i], 1, 0, 0, 42, leaf, sizeof(leaf)),
                         -1);
        assert_int_equal(errno, EINVAL);
    }
    errno = 0;
    assert_int_equal(sandbox_cgroup_enter(&cg, "t", "s", 1, UINT64_MAX, 0, 42, leaf, sizeof(leaf)),
                     -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(sandbox_cgroup_enter(&cg, "t", "s", 1, 0, 0, 0, leaf, sizeof(leaf)), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(sandbox_cgroup_enter(&cg, "t", "s", 1, 0, 0, 42, leaf, 8), -1);
    assert_int_equal(errno, ENAMETOOLONG);

    cg.memory = false; /* a limit whose controller is missing is refused, not skipped */
    errno = 0;
    assert_int_equal(sandbox_cgroup_enter(&cg, "t", "s", 1, 64, 0, 42, leaf, sizeof(leaf)), -1);
    assert_int_equal(errno, EOPNOTSUPP);
    assert_null(get("/children/t/s-1/cgroup.procs"));
}

static const char *real_mount(void)
{
    static const char *const mounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < 2; i++) {
        struct statfs sf;
        if (statfs(mounts[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
            return mounts[i];
    }
    return NULL;
}

/* The real kernel: a child moved into a leaf, then release kills it and removes the leaf. */
static void real_leaf_is_entered_and_released(void **state)
{
    (void)state;
    const char *mount = real_mount();
    if (geteuid() != 0 || mount == NULL) {
        print_message("SKIP: needs root and a cgroup v2 mount\n");
        skip();
    }
    struct sandbox_cgroup cg;
    memset(&cg, 0, sizeof(cg));
    cg.available = true; /* no controllers: only placement and kill are checked */
    snprintf(cg.root, sizeof(cg.root), "%s/mcpvisor-test-%ld", mount, (long)getpid());
    if (mkdir(cg.root, 0755) == -1) {
        print_message("SKIP: cannot create %s: %s\n", cg.root, strerror(errno));
        skip();
    }

    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0) {
        close(p[1]);
        char c;
        ssize_t n = read(p[0], &c, 1); /* blocks until killed */
        _exit(n == 0 ? 0 : 1);
    }
    close(p[0]);
    char leaf[512];
    int rc = sandbox_cgroup_enter(&cg, "tenant", "server", 9, 0, 0, pid, leaf, sizeof(leaf));
    int err = errno;
    char want[600], line[600] = "", procpath[64];
    snprintf(want, sizeof(want), "0::/mcpvisor-test-%ld/tenant/server-9\n", (long)getpid());
    snprintf(procpath, sizeof(procpath), "/proc/%ld/cgroup", (long)pid);
    FILE *f = fopen(procpath, "re");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL && strncmp(line, "0::", 3) != 0)
        ;
    if (f != NULL)
        fclose(f);

    if (rc == 0)
        sandbox_cgroup_release(leaf);
    else
        kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    close(p[1]);
    char tdir[600];
    snprintf(tdir, sizeof(tdir), "%s/tenant", cg.root);
    rmdir(tdir);
    int gone = rmdir(cg.root);

    if (rc != 0)
        fail_msg("sandbox_cgroup_enter: %s", strerror(err));
    assert_string_equal(line, want);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(access(leaf, F_OK), -1);
    assert_int_equal(gone, 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(this_machine_is_reported),
        T(no_cgroup2_mount),
        T(no_cgroup2_line_in_proc_self_cgroup),
        T(why_never_holds_double_quotes),
        T(no_memory_or_pids_controller),
        T(controllers_present_but_not_delegated),
        T(unprivileged_needs_writable_files),
        T(delegated_cgroup_is_prepared),
        T(delegated_parent_gets_a_sibling_tree),
        T(real_root_is_used_in_place),
        T(enter_writes_limits_then_the_pid),
        T(enter_refuses_what_it_cannot_do),
        cmocka_unit_test(real_leaf_is_entered_and_released),
    };
    return cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
}
