/*
 * test_seccomp.c — the seccomp filter of sandbox/seccomp.c, loaded for real: each case forks a
 * child that sets no_new_privs, applies the compiled program and attempts one syscall, and the
 * parent asserts how it ended (errno through a pipe, or death by SIGSYS).
 *
 * Arguments are chosen as in bubblewrap's try-syscall.c: bad fds, bad pointers or invalid flags,
 * so that a call the filter lets through fails with EBADF/EFAULT/EINVAL/ESRCH and only the filter
 * can answer EPERM/ENOSYS/EAFNOSUPPORT. Each refused case is also run without the filter to prove
 * that the expected errno really comes from the filter. Nothing here can change the host: every
 * call fails before it acts (the kill-tier calls are never run unfiltered).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/personality.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "seccomp.h"
#include "testchild.h"

#define BAD_PTR                      ((long)1) /* never mapped: EFAULT when the kernel reads it */
#define X32_BIT                      0x40000000L
#define NR_CLONE3                    435
#define NR_FCHMOD2                   452
#define NR_MSEAL                     462 /* newer than libseccomp 2.5.4's table */
#define NETLINK_KOBJECT_UEVENT_PROTO 15

/* How a child's attempt ended. */
struct outcome {
    int sig;  /* the signal that killed the child, 0 if it exited */
    long ret; /* the call's return value */
    int err;  /* errno when ret == -1 */
    int step; /* 0: the attempt ran; 1: no_new_privs failed; 2: apply failed */
};

struct call {
    long nr;
    long a[6];
};

typedef long (*attempt_fn)(const struct call *c);

static long raw_call(const struct call *c)
{
    return syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
}

/* Forks; the child applies f (NULL: no filter) and runs fn(c). */
static struct outcome run_fn(const struct sandbox_seccomp *f, attempt_fn fn, const struct call *c)
{
    struct outcome o;
    int p[2];

    memset(&o, 0, sizeof(o));
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0) {
        close(p[0]);
        o.step = 1;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) {
            o.step = 2;
            if (f == NULL || sandbox_seccomp_apply(f) == 0) {
                o.step = 0;
                errno = 0;
                o.ret = fn(c);
            }
        }
        o.err = errno;
        if (write(p[1], &o, sizeof(o)) != (ssize_t)sizeof(o))
            _exit(3);
        _exit(0);
    }
    close(p[1]);
    ssize_t n = read(p[0], &o, sizeof(o));
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st)) {
        memset(&o, 0, sizeof(o));
        o.sig = WTERMSIG(st);
    } else {
        assert_int_equal(n, (ssize_t)sizeof(o));
        assert_int_equal(o.step, 0);
    }
    return o;
}

static struct outcome run(const struct sandbox_seccomp *f, long nr, long a0, long a1, long a2,
                          long a3, long a4)
{
    struct call c = {nr, {a0, a1, a2, a3, a4, 0}};
    return run_fn(f, raw_call, &c);
}

static struct sandbox_seccomp compile_ok(const struct config_sandbox *sb)
{
    struct sandbox_seccomp f;
    char err[256] = "";
    int rc = sandbox_seccomp_compile(sb, &f, err, sizeof(err));
    if (rc != 0)
        print_error("compile: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(f.insns);
    assert_true(f.len > 0 && f.len <= BPF_MAXINSNS);
    return f;
}

static struct sandbox_seccomp default_filter;

static int group_setup(void **state)
{
    struct config_sandbox sb;
    char err[256];
    memset(&sb, 0, sizeof(sb));
    if (sandbox_seccomp_compile(&sb, &default_filter, err, sizeof(err)) != 0) {
        fprintf(stderr, "compile: %s\n", err);
        return -1;
    }
    /* Children killed by SIGSYS must not leave core files behind. */
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    return 0;
}

static int group_teardown(void **state)
{
    sandbox_seccomp_free(&default_filter);
    return 0;
}

/*
 * The program evaluated in user space on the seccomp_data the kernel would build (classic BPF:
 * accumulator, index register, 16 scratch words). It says what the filter decides for a call,
 * independently of the caller's privileges: an unprivileged kernel refuses pivot_root or acct
 * with EPERM on its own, so only the program can tell whose EPERM it is.
 */
static uint32_t filter_decides(const struct sandbox_seccomp *f, long nr, const long a[6])
{
    struct seccomp_data d;
    memset(&d, 0, sizeof(d));
    d.nr = (int)nr;
#if defined(__x86_64__)
    d.arch = 0xc000003eU; /* AUDIT_ARCH_X86_64 */
#endif
    for (int i = 0; i < 6; i++)
        d.args[i] = (uint64_t)a[i];
    uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {0};
    for (unsigned pc = 0; pc < f->len; pc++) {
        const struct sock_filter *in = &f->insns[pc];
        uint32_t src = BPF_SRC(in->code) == BPF_X ? X : in->k;
        switch (BPF_CLASS(in->code)) {
        case BPF_LD:
            if (BPF_MODE(in->code) == BPF_ABS) {
                assert_true(BPF_SIZE(in->code) == BPF_W && in->k % 4 == 0 &&
                            in->k + 4 <= sizeof(d));
                memcpy(&A, (const char *)&d + in->k, 4);
            } else if (BPF_MODE(in->code) == BPF_IMM) {
                A = in->k;
            } else if (BPF_MODE(in->code) == BPF_MEM) {
                assert_true(in->k < BPF_MEMWORDS);
                A = M[in->k];
            } else if (BPF_MODE(in->code) == BPF_LEN) {
                A = sizeof(d);
            } else {
                fail_msg("unexpected load mode at %u", pc);
            }
            break;
        case BPF_LDX:
            if (BPF_MODE(in->code) == BPF_MEM) {
                assert_true(in->k < BPF_MEMWORDS);
                X = M[in->k];
            } else {
                X = BPF_MODE(in->code) == BPF_LEN ? sizeof(d) : in->k;
            }
            break;
        case BPF_ST:
        case BPF_STX:
            assert_true(in->k < BPF_MEMWORDS);
            M[in->k] = BPF_CLASS(in->code) == BPF_ST ? A : X;
            break;
        case BPF_ALU:
            switch (BPF_OP(in->code)) {
            case BPF_ADD:
                A += src;
                break;
            case BPF_SUB:
                A -= src;
                break;
            case BPF_MUL:
                A *= src;
                break;
            case BPF_DIV:
                assert_true(src != 0);
                A /= src;
                break;
            case BPF_MOD:
                assert_true(src != 0);
                A %= src;
                break;
            case BPF_AND:
                A &= src;
                break;
            case BPF_OR:
                A |= src;
                break;
            case BPF_XOR:
                A ^= src;
                break;
            case BPF_LSH:
                A = src < 32 ? A << src : 0;
                break;
            case BPF_RSH:
                A = src < 32 ? A >> src : 0;
                break;
            case BPF_NEG:
                A = -A;
                break;
            default:
                fail_msg("unexpected ALU op at %u", pc);
            }
            break;
        case BPF_JMP: {
            if (BPF_OP(in->code) == BPF_JA) {
                pc += in->k;
                break;
            }
            bool t;
            switch (BPF_OP(in->code)) {
            case BPF_JEQ:
                t = A == src;
                break;
            case BPF_JGT:
                t = A > src;
                break;
            case BPF_JGE:
                t = A >= src;
                break;
            case BPF_JSET:
                t = (A & src) != 0;
                break;
            default:
                fail_msg("unexpected jump at %u", pc);
                return 0;
            }
            pc += t ? in->jt : in->jf;
            break;
        }
        case BPF_RET:
            return BPF_RVAL(in->code) == BPF_A ? A : in->k;
        case BPF_MISC:
            if (BPF_MISCOP(in->code) == BPF_TAX)
                X = A;
            else
                A = X;
            break;
        default:
            fail_msg("unexpected instruction class at %u", pc);
        }
    }
    fail_msg("the program ran off its end");
    return 0;
}

/* One refused call: the kernel answers want_errno with the filter loaded, and the program
 * itself returns that errno (so the answer is the filter's whatever our privileges). Without
 * the filter the call must end harmlessly: the arguments make it fail before it acts, or it
 * changes only the child. */
struct refusal {
    const char *what;
    long nr;
    long a[5];
    int want_errno;
};

static void check_refusal(const struct sandbox_seccomp *f, const struct refusal *r)
{
    struct outcome got = run(f, r->nr, r->a[0], r->a[1], r->a[2], r->a[3], r->a[4]);
    if (got.sig != 0 || got.ret != -1 || got.err != r->want_errno)
        print_error("%s: filtered: sig=%d ret=%ld errno=%d (%s), want errno %d\n", r->what, got.sig,
                    got.ret, got.err, strerror(got.err), r->want_errno);
    assert_int_equal(got.sig, 0);
    assert_int_equal(got.ret, -1);
    assert_int_equal(got.err, r->want_errno);

    const long a6[6] = {r->a[0], r->a[1], r->a[2], r->a[3], r->a[4], 0};
    uint32_t act = filter_decides(f, r->nr, a6);
    if (act != (SECCOMP_RET_ERRNO | (uint32_t)r->want_errno))
        print_error("%s: the program returns %#x, not ERRNO(%d)\n", r->what, act, r->want_errno);
    assert_int_equal(act, SECCOMP_RET_ERRNO | (uint32_t)r->want_errno);

    struct outcome base = run(NULL, r->nr, r->a[0], r->a[1], r->a[2], r->a[3], r->a[4]);
    if (base.sig != 0)
        print_error("%s: unfiltered: killed by signal %d\n", r->what, base.sig);
    assert_int_equal(base.sig, 0);
}

static void check_refusals(const struct sandbox_seccomp *f, const struct refusal *rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_refusal(f, &rs[i]);
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void test_mount_family_eperm(void **state)
{
    static const struct refusal rs[] = {
        {"mount", SYS_mount, {BAD_PTR, BAD_PTR, BAD_PTR, 0, 0}, EPERM},
        {"umount2", SYS_umount2, {BAD_PTR, 0}, EPERM},
        {"pivot_root", SYS_pivot_root, {BAD_PTR, BAD_PTR}, EPERM},
        {"chroot", SYS_chroot, {BAD_PTR}, EPERM},
        {"fsopen", SYS_fsopen, {BAD_PTR, 0}, EPERM},
        {"open_tree", SYS_open_tree, {-1, BAD_PTR, 0}, EPERM},
        {"move_mount", SYS_move_mount, {-1, BAD_PTR, -1, BAD_PTR, 0}, EPERM},
        {"mount_setattr", SYS_mount_setattr, {-1, BAD_PTR, 0, BAD_PTR, 32}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
}

static void test_namespaces_eperm(void **state)
{
    /* CLONE_PARENT is not a valid unshare flag: EINVAL unless the filter answers first. */
    static const struct refusal rs[] = {
        {"unshare(NEWUSER)", SYS_unshare, {CLONE_NEWUSER | CLONE_PARENT}, EPERM},
        {"unshare(NEWNS)", SYS_unshare, {CLONE_NEWNS | CLONE_PARENT}, EPERM},
        {"setns", SYS_setns, {-1, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
}

static void test_clone_namespace_flags_eperm(void **state)
{
    /* CLONE_SIGHAND without CLONE_VM is EINVAL for the kernel; each CLONE_NEW* bit is refused on
     * its own by the filter. */
    static const long bits[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
    for (size_t i = 0; i < NELEM(bits); i++) {
        struct refusal r = {"clone(CLONE_NEW*)", SYS_clone, {bits[i] | CLONE_SIGHAND, 0}, EPERM};
        check_refusal(&default_filter, &r);
    }
    /* Without a namespace bit the same invalid flags reach the kernel. */
    struct outcome o = run(&default_filter, SYS_clone, CLONE_SIGHAND, 0, 0, 0, 0);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, EINVAL);
}

static void test_process_access_eperm(void **state)
{
    static const struct refusal rs[] = {
        {"ptrace", SYS_ptrace, {PTRACE_ATTACH, 0x7ffffff0}, EPERM},
        {"process_vm_readv", SYS_process_vm_readv, {0x7ffffff0, BAD_PTR, 1, BAD_PTR, 1}, EPERM},
        {"process_vm_writev", SYS_process_vm_writev, {0x7ffffff0, BAD_PTR, 1, BAD_PTR, 1}, EPERM},
        {"pidfd_getfd", SYS_pidfd_getfd, {-1, 0, 0}, EPERM},
        {"kcmp", SYS_kcmp, {0x7ffffff0, 0x7ffffff0, 0, 0, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
}

static void test_kernel_surface_eperm(void **state)
{
    static const struct refusal rs[] = {
        {"bpf", SYS_bpf, {5 /* BPF_PROG_LOAD */, BAD_PTR, 64}, EPERM},
        {"perf_event_open", SYS_perf_event_open, {BAD_PTR, 0, -1, -1, 0}, EPERM},
        {"userfaultfd", SYS_userfaultfd, {0x7fff0000}, EPERM},
        /* io_uring must be EPERM, never a kill: libuv probes it at start-up. */
        {"io_uring_setup", SYS_io_uring_setup, {1, BAD_PTR}, EPERM},
        {"io_uring_enter", SYS_io_uring_enter, {-1, 0, 0, 0, 0}, EPERM},
        {"io_uring_register", SYS_io_uring_register, {-1, 0, 0, 0}, EPERM},
        {"keyctl", SYS_keyctl, {0xdead, 0, 0, 0, 0}, EPERM},
        {"add_key", SYS_add_key, {BAD_PTR, BAD_PTR, 0, 0, 0}, EPERM},
        {"request_key", SYS_request_key, {BAD_PTR, BAD_PTR, 0, 0}, EPERM},
        {"open_by_handle_at", SYS_open_by_handle_at, {-1, BAD_PTR, 0}, EPERM},
        {"name_to_handle_at", SYS_name_to_handle_at, {-1, BAD_PTR, BAD_PTR, BAD_PTR, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
}

static void test_host_state_eperm(void **state)
{
    static const struct refusal rs[] = {
        {"clock_settime", SYS_clock_settime, {0x7fff, BAD_PTR}, EPERM},
        {"settimeofday", SYS_settimeofday, {BAD_PTR, BAD_PTR}, EPERM},
        {"adjtimex", SYS_adjtimex, {BAD_PTR}, EPERM},
        {"sethostname", SYS_sethostname, {BAD_PTR, 1}, EPERM},
        {"setdomainname", SYS_setdomainname, {BAD_PTR, 1}, EPERM},
        {"syslog", SYS_syslog, {9999, 0, 0}, EPERM},
        {"acct", SYS_acct, {BAD_PTR}, EPERM},
        {"quotactl", SYS_quotactl, {0, BAD_PTR, 0, 0}, EPERM},
        {"fanotify_init", SYS_fanotify_init, {0xffffffff, 0}, EPERM},
        {"modify_ldt", SYS_modify_ldt, {0x7fff, 0, 0}, EPERM},
        {"ustat", SYS_ustat, {0, BAD_PTR}, EPERM},
        {"sysfs", SYS_sysfs, {0x7fff, 0, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
}

static void test_tiocsti_eperm_also_with_high_bits(void **state)
{
    static const struct refusal rs[] = {
        {"TIOCSTI", SYS_ioctl, {-1, TIOCSTI, 0}, EPERM},
        /* CVE-2019-10063: the kernel uses the low 32 bits of cmd. */
        {"TIOCSTI high bits", SYS_ioctl, {-1, (long)(0x100000000UL | TIOCSTI), 0}, EPERM},
        {"TIOCLINUX", SYS_ioctl, {-1, TIOCLINUX, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
    /* Other ioctls pass. */
    struct outcome o = run(&default_filter, SYS_ioctl, -1, TIOCGWINSZ, 0, 0, 0);
    assert_int_equal(o.err, EBADF);
}

static void test_setuid_files_eperm(void **state)
{
    static const struct refusal rs[] = {
        {"chmod u+s", SYS_chmod, {BAD_PTR, 04755}, EPERM},
        {"chmod g+s", SYS_chmod, {BAD_PTR, 02755}, EPERM},
        {"fchmod u+s", SYS_fchmod, {-1, 04755}, EPERM},
        {"fchmodat u+s", SYS_fchmodat, {AT_FDCWD, BAD_PTR, 04755}, EPERM},
        {"fchmodat2 u+s", NR_FCHMOD2, {AT_FDCWD, BAD_PTR, 04755, 0}, EPERM},
        {"open O_CREAT u+s", SYS_open, {BAD_PTR, O_CREAT | O_WRONLY, 04755}, EPERM},
        {"openat O_CREAT g+s", SYS_openat, {AT_FDCWD, BAD_PTR, O_CREAT | O_WRONLY, 02755}, EPERM},
        {"creat u+s", SYS_creat, {BAD_PTR, 04755}, EPERM},
        {"mknod S_IFCHR", SYS_mknod, {BAD_PTR, S_IFCHR | 0600, 0}, EPERM},
        {"mknodat S_IFBLK", SYS_mknodat, {AT_FDCWD, BAD_PTR, S_IFBLK | 0600, 0}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
    /* Ordinary modes reach the kernel. */
    assert_int_equal(run(&default_filter, SYS_chmod, BAD_PTR, 0755, 0, 0, 0).err, EFAULT);
    assert_int_equal(run(&default_filter, SYS_openat, AT_FDCWD, BAD_PTR, O_CREAT, 0644, 0).err,
                     EFAULT);
    assert_int_equal(run(&default_filter, SYS_openat, AT_FDCWD, BAD_PTR, O_RDONLY, 04755, 0).err,
                     EFAULT);
    assert_int_equal(run(&default_filter, SYS_mknod, BAD_PTR, S_IFIFO | 0600, 0, 0, 0).err, EFAULT);
}

static void test_personality_hardening_eperm_query_allowed(void **state)
{
    static const struct refusal rs[] = {
        {"ADDR_NO_RANDOMIZE", SYS_personality, {ADDR_NO_RANDOMIZE}, EPERM},
        {"READ_IMPLIES_EXEC", SYS_personality, {READ_IMPLIES_EXEC}, EPERM},
        {"MMAP_PAGE_ZERO", SYS_personality, {PER_LINUX | MMAP_PAGE_ZERO}, EPERM},
        {"high bit set", SYS_personality, {(long)0x80040000UL}, EPERM},
    };
    check_refusals(&default_filter, rs, NELEM(rs));
    /* The 0xffffffff query and PER_LINUX work. */
    struct outcome o = run(&default_filter, SYS_personality, 0xffffffffL, 0, 0, 0, 0);
    assert_int_equal(o.sig, 0);
    assert_true(o.ret >= 0);
    o = run(&default_filter, SYS_personality, PER_LINUX, 0, 0, 0, 0);
    assert_true(o.ret >= 0);
}

static void test_clone3_enosys(void **state)
{
    struct refusal r = {"clone3", NR_CLONE3, {BAD_PTR, 88}, ENOSYS};
    check_refusal(&default_filter, &r);
}

static void test_syscalls_newer_than_libseccomp_enosys(void **state)
{
    struct outcome o = run(&default_filter, NR_MSEAL, 1, 4096, 0, 0, 0);
    assert_int_equal(o.sig, 0);
    assert_int_equal(o.ret, -1);
    assert_int_equal(o.err, ENOSYS);
    o = run(&default_filter, 1000, 0, 0, 0, 0, 0);
    assert_int_equal(o.err, ENOSYS);
}

static long make_socket(const struct call *c)
{
    long fd = syscall(c->nr, c->a[0], c->a[1], c->a[2]);
    if (fd >= 0)
        close((int)fd);
    return fd;
}

static void test_socket_families(void **state)
{
    static const struct {
        long family, type, proto;
        int want; /* 0: a socket is made */
    } cases[] = {
        {AF_PACKET, SOCK_RAW, 0, EAFNOSUPPORT},
        {AF_VSOCK, SOCK_STREAM, 0, EAFNOSUPPORT},
        {AF_BLUETOOTH, SOCK_RAW, 0, EAFNOSUPPORT},
        {AF_ALG, SOCK_SEQPACKET, 0, EAFNOSUPPORT},
        {0, SOCK_STREAM, 0, EAFNOSUPPORT},
        {(long)(0x100000000UL | AF_INET), SOCK_STREAM, 0, EAFNOSUPPORT},
        {AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT_PROTO, EPROTONOSUPPORT},
        {AF_INET, SOCK_STREAM, 0, 0},
        {AF_INET6, SOCK_DGRAM, 0, 0},
        {AF_UNIX, SOCK_STREAM, 0, 0},
        {AF_NETLINK, SOCK_RAW, 0 /* NETLINK_ROUTE */, 0},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        struct call c = {SYS_socket, {cases[i].family, cases[i].type, cases[i].proto}};
        struct outcome o = run_fn(&default_filter, make_socket, &c);
        if (o.sig != 0 || (cases[i].want == 0 ? o.ret < 0 : o.err != cases[i].want))
            print_error("socket(%ld, %ld, %ld): ret=%ld errno=%d\n", cases[i].family, cases[i].type,
                        cases[i].proto, o.ret, o.err);
        assert_int_equal(o.sig, 0);
        if (cases[i].want == 0) {
            assert_true(o.ret >= 0);
        } else {
            assert_int_equal(o.ret, -1);
            assert_int_equal(o.err, cases[i].want);
        }
    }
    struct call pair = {SYS_socketpair, {AF_PACKET, SOCK_STREAM, 0, BAD_PTR}};
    assert_int_equal(run_fn(&default_filter, raw_call, &pair).err, EAFNOSUPPORT);
    pair.a[0] = AF_UNIX;
    assert_int_equal(run_fn(&default_filter, raw_call, &pair).err, EFAULT);
}

static void test_kill_tier_sigsys(void **state)
{
    /* Invalid flags: even unfiltered, kexec_load would refuse before acting. */
    struct outcome o = run(&default_filter, SYS_kexec_load, 0, 0, 0, 0x7fff0000, 0);
    assert_int_equal(o.sig, SIGSYS);
    o = run(&default_filter, SYS_init_module, BAD_PTR, 0, BAD_PTR, 0, 0);
    assert_int_equal(o.sig, SIGSYS);
    o = run(&default_filter, SYS_iopl, 0x7fff, 0, 0, 0, 0);
    assert_int_equal(o.sig, SIGSYS);
    o = run(&default_filter, SYS_swapoff, BAD_PTR, 0, 0, 0, 0);
    assert_int_equal(o.sig, SIGSYS);
}

static void test_x32_abi_sigsys(void **state)
{
    /* Killed whether or not the kernel has x32: the filter runs before dispatch. */
    struct outcome o = run(&default_filter, SYS_getpid | X32_BIT, 0, 0, 0, 0, 0);
    assert_int_equal(o.sig, SIGSYS);
    o = run(&default_filter, SYS_unshare | X32_BIT, CLONE_NEWUSER, 0, 0, 0, 0);
    assert_int_equal(o.sig, SIGSYS);
}

/* getpid through the i386 entry point (int 0x80: eax = 20). */
static long int80_getpid(const struct call *c)
{
#if defined(__x86_64__)
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "rcx", "r11");
    return r;
#else
    return -1;
#endif
}

static bool ia32_emulation(void)
{
#if defined(__x86_64__)
    struct call c = {0, {0}};
    struct outcome o = run_fn(NULL, int80_getpid, &c);
    return o.sig == 0 && o.ret > 0;
#else
    return false;
#endif
}

static void test_i386_abi_sigsys(void **state)
{
    if (!ia32_emulation()) {
        print_message("skipped: no IA32 emulation (int 0x80) on this kernel\n");
        skip();
    }
    struct call c = {0, {0}};
    struct outcome o = run_fn(&default_filter, int80_getpid, &c);
    assert_int_equal(o.sig, SIGSYS);
}

static void *thread_main(void *arg)
{
    return arg;
}

static long start_thread(const struct call *c)
{
    pthread_t t;
    void *res = NULL;
    int rc = pthread_create(&t, NULL, thread_main, (void *)0x2a);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    if (pthread_join(t, &res) != 0 || res != (void *)0x2a)
        return -2;
    return 0;
}

static long fork_and_exec(const struct call *c)
{
    pid_t pid = fork();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        char *argv[] = {"/bin/true", NULL};
        execve("/bin/true", argv, (char *[]){NULL});
        _exit(99);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_threads_fork_exec_work(void **state)
{
    struct call c = {0, {0}};
    struct outcome o = run_fn(&default_filter, start_thread, &c);
    assert_int_equal(o.sig, 0);
    assert_int_equal(o.ret, 0);
    o = run_fn(&default_filter, fork_and_exec, &c);
    assert_int_equal(o.sig, 0);
    assert_int_equal(o.ret, 0);
    /* Left allowed on purpose: prctl, membarrier, memfd_create, seccomp (stacking narrows). */
    assert_true(run(&default_filter, SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0).ret == 1);
    assert_true(run(&default_filter, SYS_membarrier, 0 /* QUERY */, 0, 0, 0, 0).ret >= 0);
    assert_int_equal(run(&default_filter, SYS_memfd_create, BAD_PTR, 0, 0, 0, 0).err, EFAULT);
    assert_int_equal(run(&default_filter, SYS_seccomp, 0xdead, 0, 0, 0, 0).err, EINVAL);
}

static void test_action_errno_turns_kill_into_eperm(void **state)
{
    struct config_sandbox sb;
    memset(&sb, 0, sizeof(sb));
    sb.seccomp_action = CONFIG_SECCOMP_ERRNO;
    struct sandbox_seccomp f = compile_ok(&sb);
    struct outcome o = run(&f, SYS_kexec_load, 0, 0, 0, 0x7fff0000, 0);
    assert_int_equal(o.sig, 0);
    assert_int_equal(o.err, EPERM);
    /* The architecture gate still kills. */
    assert_int_equal(run(&f, SYS_getpid | X32_BIT, 0, 0, 0, 0, 0).sig, SIGSYS);
    assert_int_equal(run(&f, NR_CLONE3, BAD_PTR, 88, 0, 0, 0).err, ENOSYS);
    sandbox_seccomp_free(&f);
}

static void test_action_log_lets_calls_through(void **state)
{
    struct config_sandbox sb;
    memset(&sb, 0, sizeof(sb));
    sb.seccomp_action = CONFIG_SECCOMP_LOG;
    struct sandbox_seccomp f = compile_ok(&sb);
    /* Logged, then the kernel answers: EINVAL for these invalid flags. */
    struct outcome o = run(&f, SYS_kexec_load, 0, 0, 0, 0x7fff0000, 0);
    assert_int_equal(o.sig, 0);
    assert_true(o.err != EPERM);
    o = run(&f, SYS_unshare, CLONE_NEWUSER | CLONE_PARENT, 0, 0, 0, 0);
    assert_int_equal(o.err, EINVAL);
    /* Fallback answers and the architecture gate stay. */
    assert_int_equal(run(&f, NR_CLONE3, BAD_PTR, 88, 0, 0, 0).err, ENOSYS);
    assert_int_equal(run(&f, SYS_getpid | X32_BIT, 0, 0, 0, 0, 0).sig, SIGSYS);
    sandbox_seccomp_free(&f);
}

static void test_manifest_deny_kills(void **state)
{
    char *deny[] = {"getcwd", "ptrace", "vm86"};
    struct config_sandbox sb;
    memset(&sb, 0, sizeof(sb));
    sb.seccomp_deny = deny;
    sb.nseccomp_deny = NELEM(deny);
    struct sandbox_seccomp f = compile_ok(&sb);
    assert_int_equal(run(&f, SYS_getcwd, BAD_PTR, 0, 0, 0, 0).sig, SIGSYS);
    /* A default EPERM call named in deny moves to the kill tier. */
    assert_int_equal(run(&f, SYS_ptrace, PTRACE_ATTACH, 0x7ffffff0, 0, 0, 0).sig, SIGSYS);
    assert_int_equal(run(&f, SYS_getpid, 0, 0, 0, 0, 0).sig, 0);
    sandbox_seccomp_free(&f);

    /* Without the manifest, getcwd works. */
    assert_int_equal(run(&default_filter, SYS_getcwd, BAD_PTR, 0, 0, 0, 0).err, ERANGE);
}

static void test_manifest_allow_removes_rules(void **state)
{
    char *allow[] = {"ptrace", "personality", "clone3", "clone", "socket"};
    struct config_sandbox sb;
    memset(&sb, 0, sizeof(sb));
    sb.seccomp_allow = allow;
    sb.nseccomp_allow = NELEM(allow);
    struct sandbox_seccomp f = compile_ok(&sb);
    /* Now the kernel answers: no such process, success, bad address, invalid flags. */
    assert_int_equal(run(&f, SYS_ptrace, PTRACE_ATTACH, 0x7ffffff0, 0, 0, 0).err, ESRCH);
    assert_true(run(&f, SYS_personality, ADDR_NO_RANDOMIZE, 0, 0, 0, 0).ret >= 0);
    assert_int_equal(run(&f, NR_CLONE3, BAD_PTR, 88, 0, 0, 0).err, EFAULT);
    assert_int_equal(run(&f, SYS_clone, CLONE_NEWUSER | CLONE_SIGHAND, 0, 0, 0, 0).err, EINVAL);
    /* AF_PACKET reaches the kernel, which wants CAP_NET_RAW: a socket as root, EPERM if not. */
    struct call c = {SYS_socket, {AF_PACKET, SOCK_RAW, 0}};
    assert_int_equal(filter_decides(&f, SYS_socket, c.a), SECCOMP_RET_ALLOW);
    struct outcome o = run_fn(&f, make_socket, &c);
    assert_true(o.ret >= 0 || o.err == EPERM);
    /* Everything else stays refused, and the architecture gate cannot be allowed away. */
    assert_int_equal(run(&f, SYS_unshare, CLONE_NEWUSER | CLONE_PARENT, 0, 0, 0, 0).err, EPERM);
    assert_int_equal(run(&f, SYS_ptrace | X32_BIT, 0, 0, 0, 0, 0).sig, SIGSYS);
    sandbox_seccomp_free(&f);
}

static void expect_compile_error(char **deny, size_t ndeny, char **allow, size_t nallow,
                                 const char *want)
{
    struct config_sandbox sb;
    struct sandbox_seccomp f = {(struct sock_filter *)0x1, 7};
    char err[256] = "";
    memset(&sb, 0, sizeof(sb));
    sb.seccomp_deny = deny;
    sb.nseccomp_deny = ndeny;
    sb.seccomp_allow = allow;
    sb.nseccomp_allow = nallow;
    assert_int_equal(sandbox_seccomp_compile(&sb, &f, err, sizeof(err)), -1);
    if (strstr(err, want) == NULL)
        print_error("error \"%s\" does not contain \"%s\"\n", err, want);
    assert_non_null(strstr(err, want));
    assert_null(f.insns);
    assert_int_equal(f.len, 0);
}

static void test_unknown_names_are_compile_errors(void **state)
{
    char *bad_deny[] = {"getpid", "frobnicate"};
    char *bad_allow[] = {"ptrace_me"};
    char *exec_deny[] = {"execve"};
    expect_compile_error(bad_deny, 2, NULL, 0, "seccomp/deny: unknown system call \"frobnicate\"");
    expect_compile_error(NULL, 0, bad_allow, 1, "seccomp/allow: unknown system call \"ptrace_me\"");
    expect_compile_error(exec_deny, 1, NULL, 0, "\"execve\" cannot be denied");
}

static void test_apply_requires_no_new_privs(void **state)
{
    struct sandbox_seccomp empty = {NULL, 0};
    errno = 0;
    assert_int_equal(sandbox_seccomp_apply(&empty), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(sandbox_seccomp_apply(NULL), -1);

    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0) {
        int res[2];
        res[0] = sandbox_seccomp_apply(&default_filter);
        res[1] = errno;
        _exit(write(p[1], res, sizeof(res)) == (ssize_t)sizeof(res) ? 0 : 1);
    }
    int res[2] = {0, 0};
    close(p[1]);
    assert_int_equal(read(p[0], res, sizeof(res)), (ssize_t)sizeof(res));
    close(p[0]);
    waitpid(pid, NULL, 0);
    assert_int_equal(res[0], -1);
    assert_int_equal(res[1], EPERM);
}

static void test_filter_starts_with_architecture_gate(void **state)
{
    const struct sock_filter *p = default_filter.insns;
    assert_int_equal(p[0].code, BPF_LD | BPF_W | BPF_ABS);
    assert_int_equal(p[0].k, 4); /* offsetof(struct seccomp_data, arch) */
    assert_int_equal(p[1].code, BPF_JMP | BPF_JEQ | BPF_K);
#if defined(__x86_64__)
    assert_int_equal(p[1].k, 0xc000003eU); /* AUDIT_ARCH_X86_64 */
#endif
}

static void test_syscall_names(void **state)
{
    assert_string_equal(sandbox_syscall_name(SYS_getpid), "getpid");
    assert_string_equal(sandbox_syscall_name(SYS_kexec_load), "kexec_load");
    assert_string_equal(sandbox_syscall_name(SYS_io_uring_setup), "io_uring_setup");
#if defined(__x86_64__)
    assert_string_equal(sandbox_syscall_name(SYS_getpid | X32_BIT), "getpid (x32)");
    assert_string_equal(sandbox_syscall_name(20 | SANDBOX_SECCOMP_NR_I386), "getpid (i386)");
#endif
    assert_null(sandbox_syscall_name(-1));
    assert_null(sandbox_syscall_name(100000));
}

static bool kmsg_readable(void)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1)
        return false;
    close(fd);
    return true;
}

/* Kills a child with fn(c) under the default filter and returns its pid. */
static pid_t kill_child(attempt_fn fn, const struct call *c)
{
    pid_t pid = test_fork();
    assert_true(pid != -1);
    if (pid == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
            sandbox_seccomp_apply(&default_filter) == 0)
            fn(c);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
    return pid;
}

/* The kernel prints audit records under printk_ratelimit (10 per 5 s by default, shared with
 * the rest of the kernel): when a record is missing, wait for a new burst and kill again. */
static int killer_after_kill(attempt_fn fn, const struct call *c, bool by_pid)
{
    for (int round = 0; round < 2; round++) {
        pid_t pid = kill_child(fn, c);
        int nr = sandbox_seccomp_killer(by_pid ? pid : -1);
        if (nr != -1)
            return nr;
        sleep(6);
    }
    return -1;
}

static void test_killer_names_the_syscall(void **state)
{
    if (!kmsg_readable()) {
        print_message("skipped: /dev/kmsg is not readable (needs CAP_SYSLOG)\n");
        skip();
    }
    struct call c = {SYS_kexec_load, {0, 0, 0, 0x7fff0000}};
    int nr = killer_after_kill(raw_call, &c, true);
    if (nr == -1) {
        print_message("skipped: no audit record in /dev/kmsg (auditd running, or audit off)\n");
        skip();
    }
    assert_int_equal(nr, SYS_kexec_load);
    assert_string_equal(sandbox_syscall_name(nr), "kexec_load");
    /* Each record is reported once. */
    assert_int_equal(sandbox_seccomp_killer(-1), -1);

    /* pid <= 0: the newest kill not reported yet (the spawner only sees the sandbox init). */
    c.nr = SYS_getpid | X32_BIT;
    nr = killer_after_kill(raw_call, &c, false);
    assert_int_equal(nr, SYS_getpid | X32_BIT);
    assert_string_equal(sandbox_syscall_name(nr), "getpid (x32)");

    if (ia32_emulation()) {
        nr = killer_after_kill(int80_getpid, &c, false);
        assert_int_equal(nr, 20 | SANDBOX_SECCOMP_NR_I386);
        assert_string_equal(sandbox_syscall_name(nr), "getpid (i386)");
    }
}

static char *describe(const struct config_sandbox *sb)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    sandbox_seccomp_describe(sb, f);
    fclose(f);
    return buf;
}

static void test_describe(void **state)
{
    struct config_sandbox sb;
    memset(&sb, 0, sizeof(sb));
    char *d = describe(&sb);
    assert_non_null(strstr(d, "kernel replacement (kill the process): kexec_load"));
    assert_non_null(strstr(d, "namespaces (EPERM): unshare, setns, clone with a CLONE_NEW* flag"));
    assert_non_null(strstr(d, "io_uring_setup"));
    assert_non_null(strstr(d, "(ENOSYS): clone3\n"));
    assert_non_null(strstr(d, "(nr > "));
    assert_non_null(strstr(d, "x32"));
    assert_null(strstr(d, "vm86")); /* not on x86_64 */
    free(d);

    char *deny[] = {"getcwd", "vm86"};
    char *allow[] = {"ptrace"};
    sb.seccomp_deny = deny;
    sb.nseccomp_deny = 2;
    sb.seccomp_allow = allow;
    sb.nseccomp_allow = 1;
    sb.seccomp_action = CONFIG_SECCOMP_ERRNO;
    d = describe(&sb);
    assert_non_null(strstr(d, "manifest deny (EPERM: action \"errno\"): getcwd\n"));
    assert_non_null(strstr(d, "allowed by the manifest (default rules removed): ptrace\n"));
    assert_non_null(strstr(d, "(ignored): vm86\n"));
    assert_non_null(strstr(d, "other processes (EPERM): process_vm_readv"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: the kernel's printk rate limit is not yet spent by the other kills. */
        cmocka_unit_test(test_killer_names_the_syscall),
        cmocka_unit_test(test_mount_family_eperm),
        cmocka_unit_test(test_namespaces_eperm),
        cmocka_unit_test(test_clone_namespace_flags_eperm),
        cmocka_unit_test(test_process_access_eperm),
        cmocka_unit_test(test_kernel_surface_eperm),
        cmocka_unit_test(test_host_state_eperm),
        cmocka_unit_test(test_tiocsti_eperm_also_with_high_bits),
        cmocka_unit_test(test_setuid_files_eperm),
        cmocka_unit_test(test_personality_hardening_eperm_query_allowed),
        cmocka_unit_test(test_clone3_enosys),
        cmocka_unit_test(test_syscalls_newer_than_libseccomp_enosys),
        cmocka_unit_test(test_socket_families),
        cmocka_unit_test(test_kill_tier_sigsys),
        cmocka_unit_test(test_x32_abi_sigsys),
        cmocka_unit_test(test_i386_abi_sigsys),
        cmocka_unit_test(test_threads_fork_exec_work),
        cmocka_unit_test(test_action_errno_turns_kill_into_eperm),
        cmocka_unit_test(test_action_log_lets_calls_through),
        cmocka_unit_test(test_manifest_deny_kills),
        cmocka_unit_test(test_manifest_allow_removes_rules),
        cmocka_unit_test(test_unknown_names_are_compile_errors),
        cmocka_unit_test(test_apply_requires_no_new_privs),
        cmocka_unit_test(test_filter_starts_with_architecture_gate),
        cmocka_unit_test(test_syscall_names),
        cmocka_unit_test(test_describe),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
