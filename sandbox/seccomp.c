/*
 * seccomp.c — compiles, applies and explains the seccomp filter of a sandboxed child.
 *
 * The policy is one table (default_rules) read by both the compiler and `mcpvisor check`, so what
 * check prints is what is loaded. libseccomp compiles the table; its BPF is exported into a memfd
 * and read back (libseccomp 2.5 cannot export into memory). In front of it goes a short
 * hand-written prefix, as runc's patchbpf does, for what libseccomp cannot express:
 *   - arch != native → kill; x32 (nr & 0x40000000) → kill. libseccomp does this as well (its
 *     BADARCH action, also set to kill); the prefix makes it independent of libseccomp's version.
 *   - nr above the highest syscall libseccomp knows → ENOSYS: a deny list cannot name syscalls
 *     newer than its table (open_tree_attr on 6.15+ is a mount call), and ENOSYS is what
 *     libraries fall back on.
 *   - personality with a PER_CLEAR_ON_SETID bit, except the 0xffffffff query: libseccomp 2.5
 *     refuses two comparisons on one argument.
 * All jumps in classic BPF go forward, relative to the next instruction, so prepending leaves the
 * libseccomp program intact.
 *
 * Compilation allocates and runs in the spawner before fork; sandbox_seccomp_apply is the only
 * function called in the child and is async-signal-safe. Never widens the profile silently: an
 * unknown syscall name in the manifest is an error, not a skipped rule.
 */
/* This folder's seccomp.h, found on the -Isandbox path, then libseccomp's (see there). */
#define SANDBOX_SECCOMP_IMPL
#include <seccomp.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/personality.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_RET_ACTION_FULL
#define SECCOMP_RET_ACTION_FULL 0xffff0000U
#endif
#ifndef SECCOMP_RET_LOG
#define SECCOMP_RET_LOG 0x7ffc0000U
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif
#ifndef SECCOMP_FILTER_FLAG_LOG
#define SECCOMP_FILTER_FLAG_LOG (1UL << 1)
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#define X32_SYSCALL_BIT 0x40000000U
#define KERNEL_TMPFILE  020000000 /* the kernel's __O_TMPFILE (glibc's adds O_DIRECTORY) */
#define NR_SCAN_LIMIT   1024      /* syscall numbers scanned for the highest one libseccomp knows */
#define KMSG_RECORD_MAX 8192      /* CONSOLE_EXT_LOG_MAX: a shorter read buffer gets EINVAL */
#define KMSG_MAX_READS  200000    /* bounds one scan of /dev/kmsg */
#define KILLER_WINDOW_S 10        /* audit records older than this are not "recent" */

/* The kernel's own list of personality flags that weaken exploit mitigations. */
#define PERSONALITY_DENIED                                                                         \
    (READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE | ADDR_COMPAT_LAYOUT | MMAP_PAGE_ZERO)

enum tier {
    TIER_KILL,   /* never legitimate: kill the process ("errno": EPERM, "log": log) */
    TIER_EPERM,  /* libraries may probe: EPERM ("log": log) */
    TIER_ENOSYS, /* callers fall back: ENOSYS, whatever the action */
    TIER_FAMILY, /* socket families: EAFNOSUPPORT (netlink protocols: EPROTONOSUPPORT) */
};

enum cond {
    COND_NONE,
    COND_CLONE_NS,    /* arg: flags; any CLONE_NEW* bit */
    COND_TTY_INJECT,  /* arg: ioctl cmd; TIOCSTI or TIOCLINUX in the low 32 bits */
    COND_SUID_MODE,   /* arg: mode; S_ISUID or S_ISGID */
    COND_CREATE_SUID, /* arg: mode, arg - 1: flags; O_CREAT or O_TMPFILE with S_ISUID/S_ISGID */
    COND_DEVICE,      /* arg: mode; S_IFCHR or S_IFBLK */
    COND_FAMILY,      /* arg 0: family not unix/inet/inet6/netlink, or netlink other than route */
    COND_PERSONALITY, /* in the prefix: PERSONALITY_DENIED bits, not the 0xffffffff query */
};

struct rule {
    const char *name;
    unsigned char tier;
    unsigned char cond;
    unsigned char arg;
    const char *group; /* rules of one group are described on one line */
};

/* SANDBOX-NOTES.md A.6. Names this architecture lacks (umount, vm86, stime, ...) are skipped. */
static const struct rule default_rules[] = {
    {"kexec_load", TIER_KILL, COND_NONE, 0, "kernel replacement"},
    {"kexec_file_load", TIER_KILL, COND_NONE, 0, "kernel replacement"},
    {"reboot", TIER_KILL, COND_NONE, 0, "kernel replacement"},
    {"init_module", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"finit_module", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"delete_module", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"create_module", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"query_module", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"get_kernel_syms", TIER_KILL, COND_NONE, 0, "kernel modules"},
    {"iopl", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"ioperm", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"pciconfig_read", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"pciconfig_write", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"pciconfig_iobase", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"swapon", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},
    {"swapoff", TIER_KILL, COND_NONE, 0, "raw I/O and swap"},

    {"mount", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"umount", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"umount2", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"pivot_root", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"chroot", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"fsopen", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"fsconfig", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"fsmount", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"fspick", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"move_mount", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"open_tree", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"mount_setattr", TIER_EPERM, COND_NONE, 0, "mount family"},
    {"unshare", TIER_EPERM, COND_NONE, 0, "namespaces"},
    {"setns", TIER_EPERM, COND_NONE, 0, "namespaces"},
    {"clone", TIER_EPERM, COND_CLONE_NS, 0, "namespaces"},
    {"ptrace", TIER_EPERM, COND_NONE, 0, "other processes"},
    {"process_vm_readv", TIER_EPERM, COND_NONE, 0, "other processes"},
    {"process_vm_writev", TIER_EPERM, COND_NONE, 0, "other processes"},
    {"pidfd_getfd", TIER_EPERM, COND_NONE, 0, "other processes"},
    {"kcmp", TIER_EPERM, COND_NONE, 0, "other processes"},
    {"perf_event_open", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"bpf", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"userfaultfd", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"io_uring_setup", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"io_uring_enter", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"io_uring_register", TIER_EPERM, COND_NONE, 0, "kernel attack surface"},
    {"keyctl", TIER_EPERM, COND_NONE, 0, "kernel keyrings"},
    {"add_key", TIER_EPERM, COND_NONE, 0, "kernel keyrings"},
    {"request_key", TIER_EPERM, COND_NONE, 0, "kernel keyrings"},
    {"open_by_handle_at", TIER_EPERM, COND_NONE, 0, "handle-based open"},
    {"name_to_handle_at", TIER_EPERM, COND_NONE, 0, "handle-based open"},
    {"acct", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"quotactl", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"quotactl_fd", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"nfsservctl", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"lookup_dcookie", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"fanotify_init", TIER_EPERM, COND_NONE, 0, "host administration"},
    {"settimeofday", TIER_EPERM, COND_NONE, 0, "system clock"},
    {"clock_settime", TIER_EPERM, COND_NONE, 0, "system clock"},
    {"clock_adjtime", TIER_EPERM, COND_NONE, 0, "system clock"},
    {"adjtimex", TIER_EPERM, COND_NONE, 0, "system clock"},
    {"stime", TIER_EPERM, COND_NONE, 0, "system clock"},
    {"sethostname", TIER_EPERM, COND_NONE, 0, "host identity and log"},
    {"setdomainname", TIER_EPERM, COND_NONE, 0, "host identity and log"},
    {"syslog", TIER_EPERM, COND_NONE, 0, "host identity and log"},
    {"modify_ldt", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"vm86", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"vm86old", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"subpage_prot", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"switch_endian", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"uselib", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"ustat", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"sysfs", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"vhangup", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"_sysctl", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"afs_syscall", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"getpmsg", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"putpmsg", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"security", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"tuxcall", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"vserver", TIER_EPERM, COND_NONE, 0, "legacy and obsolete"},
    {"personality", TIER_EPERM, COND_PERSONALITY, 0, "arguments"},
    {"ioctl", TIER_EPERM, COND_TTY_INJECT, 1, "arguments"},
    {"chmod", TIER_EPERM, COND_SUID_MODE, 1, "arguments"},
    {"fchmod", TIER_EPERM, COND_SUID_MODE, 1, "arguments"},
    {"fchmodat", TIER_EPERM, COND_SUID_MODE, 2, "arguments"},
    {"fchmodat2", TIER_EPERM, COND_SUID_MODE, 2, "arguments"},
    {"creat", TIER_EPERM, COND_SUID_MODE, 1, "arguments"},
    {"open", TIER_EPERM, COND_CREATE_SUID, 2, "arguments"},
    {"openat", TIER_EPERM, COND_CREATE_SUID, 3, "arguments"},
    {"mknod", TIER_EPERM, COND_DEVICE, 1, "arguments"},
    {"mknodat", TIER_EPERM, COND_DEVICE, 2, "arguments"},

    {"clone3", TIER_ENOSYS, COND_NONE, 0, "flags behind a pointer, libc falls back to clone"},
    {"socket", TIER_FAMILY, COND_FAMILY, 0, "address families"},
    {"socketpair", TIER_FAMILY, COND_FAMILY, 0, "address families"},
};

#define NRULES (sizeof(default_rules) / sizeof(default_rules[0]))

static const unsigned long clone_ns_bits[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
    /* CLONE_NEWTIME (0x80) is inside CSIGNAL for clone(2): only clone3 and unshare take it. */
};

static const unsigned long allowed_families[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};

/* What each condition refuses, for `mcpvisor check`. */
static const char *cond_text(unsigned char cond)
{
    switch (cond) {
    case COND_CLONE_NS:
        return " with a CLONE_NEW* flag";
    case COND_TTY_INJECT:
        return " TIOCSTI/TIOCLINUX";
    case COND_SUID_MODE:
        return " with S_ISUID/S_ISGID";
    case COND_CREATE_SUID:
        return " creating with S_ISUID/S_ISGID";
    case COND_DEVICE:
        return " of S_IFCHR/S_IFBLK";
    case COND_PERSONALITY:
        return " with ADDR_NO_RANDOMIZE/READ_IMPLIES_EXEC/ADDR_COMPAT_LAYOUT/MMAP_PAGE_ZERO";
    default:
        return "";
    }
}

static bool in_list(const char *name, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* A default rule is in force unless the manifest allows the syscall or moves it to `deny`. */
static bool rule_active(const struct config_sandbox *sb, const struct rule *r)
{
    return !in_list(r->name, sb->seccomp_allow, sb->nseccomp_allow) &&
           !in_list(r->name, sb->seccomp_deny, sb->nseccomp_deny);
}

static int native_nr(const char *name)
{
    return seccomp_syscall_resolve_name_arch(SCMP_ARCH_NATIVE, name);
}

/* The highest syscall number libseccomp can name on this architecture. */
static int highest_known_nr(void)
{
    int max = -1;
    for (int nr = 0; nr < NR_SCAN_LIMIT; nr++) {
        char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (s != NULL) {
            max = nr;
            free(s);
        }
    }
    return max;
}

static uint32_t tier_action(const struct config_sandbox *sb, unsigned char tier)
{
    switch (tier) {
    case TIER_KILL:
        return sb->seccomp_action == CONFIG_SECCOMP_KILL    ? SCMP_ACT_KILL_PROCESS
               : sb->seccomp_action == CONFIG_SECCOMP_ERRNO ? SCMP_ACT_ERRNO(EPERM)
                                                            : SCMP_ACT_LOG;
    case TIER_EPERM:
        return sb->seccomp_action == CONFIG_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM);
    case TIER_ENOSYS:
        return SCMP_ACT_ERRNO(ENOSYS);
    default:
        return SCMP_ACT_ERRNO(EAFNOSUPPORT);
    }
}

/* Adds one default rule (the syscall exists here). Returns 0 or a negative errno. */
static int add_rule(scmp_filter_ctx ctx, const struct rule *r, int nr, uint32_t act)
{
    int rc = 0;
    unsigned a = r->arg;

    switch (r->cond) {
    case COND_NONE:
        return seccomp_rule_add(ctx, act, nr, 0);
    case COND_CLONE_NS:
        for (size_t i = 0; rc == 0 && i < sizeof(clone_ns_bits) / sizeof(clone_ns_bits[0]); i++)
            rc = seccomp_rule_add(
                ctx, act, nr, 1,
                SCMP_CMP(a, SCMP_CMP_MASKED_EQ, clone_ns_bits[i], clone_ns_bits[i]));
        return rc;
    case COND_TTY_INJECT:
        /* ioctl's cmd is 32-bit: the kernel ignores the high bits (CVE-2019-10063). */
        rc = seccomp_rule_add(ctx, act, nr, 1,
                              SCMP_CMP(a, SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI));
        if (rc == 0)
            rc = seccomp_rule_add(ctx, act, nr, 1,
                                  SCMP_CMP(a, SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX));
        return rc;
    case COND_SUID_MODE:
        rc = seccomp_rule_add(ctx, act, nr, 1, SCMP_CMP(a, SCMP_CMP_MASKED_EQ, S_ISUID, S_ISUID));
        if (rc == 0)
            rc = seccomp_rule_add(ctx, act, nr, 1,
                                  SCMP_CMP(a, SCMP_CMP_MASKED_EQ, S_ISGID, S_ISGID));
        return rc;
    case COND_CREATE_SUID: {
        /* open(O_CREAT, 04755) makes a setuid file without any chmod. */
        static const unsigned long creating[] = {O_CREAT, KERNEL_TMPFILE};
        static const unsigned long bits[] = {S_ISUID, S_ISGID};
        for (size_t i = 0; rc == 0 && i < 2; i++)
            for (size_t j = 0; rc == 0 && j < 2; j++)
                rc = seccomp_rule_add(ctx, act, nr, 2,
                                      SCMP_CMP(a - 1, SCMP_CMP_MASKED_EQ, creating[i], creating[i]),
                                      SCMP_CMP(a, SCMP_CMP_MASKED_EQ, bits[j], bits[j]));
        return rc;
    }
    case COND_DEVICE:
        rc = seccomp_rule_add(ctx, act, nr, 1, SCMP_CMP(a, SCMP_CMP_MASKED_EQ, S_IFMT, S_IFCHR));
        if (rc == 0)
            rc =
                seccomp_rule_add(ctx, act, nr, 1, SCMP_CMP(a, SCMP_CMP_MASKED_EQ, S_IFMT, S_IFBLK));
        return rc;
    case COND_FAMILY: {
        /* One comparison per argument and rule in libseccomp 2.5: refuse every value below the
         * highest allowed family that is not allowed, then everything above it (which includes
         * any value with high bits set). */
        size_t nallowed = sizeof(allowed_families) / sizeof(allowed_families[0]);
        unsigned long top = allowed_families[nallowed - 1];
        for (unsigned long fam = 0; rc == 0 && fam < top; fam++) {
            bool ok = false;
            for (size_t i = 0; i < nallowed; i++)
                ok = ok || allowed_families[i] == fam;
            if (!ok)
                rc = seccomp_rule_add(ctx, act, nr, 1, SCMP_A0(SCMP_CMP_EQ, fam, 0));
        }
        if (rc == 0)
            rc = seccomp_rule_add(ctx, act, nr, 1, SCMP_A0(SCMP_CMP_GT, top, 0));
        /* Netlink: routing only (getaddrinfo, getifaddrs); not uevents, audit, diag, ... */
        if (rc == 0 && strcmp(r->name, "socket") == 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), nr, 2,
                                  SCMP_A0(SCMP_CMP_EQ, AF_NETLINK, 0), SCMP_A2(SCMP_CMP_NE, 0, 0));
        return rc;
    }
    default: /* COND_PERSONALITY: in the prefix */
        return 0;
    }
}

/* libseccomp 2.5 exports only into a file descriptor: use a memfd and read it back. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_filter **insns, size_t *n, char *err,
                      size_t errlen)
{
    int fd = memfd_create("mcpvisor-seccomp", MFD_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "seccomp: memfd_create: %s", strerror(errno));
        return -1;
    }
    int rc = seccomp_export_bpf(ctx, fd);
    struct stat st;
    if (rc < 0 || fstat(fd, &st) == -1) {
        snprintf(err, errlen, "seccomp: cannot export the filter: %s",
                 strerror(rc < 0 ? -rc : errno));
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % sizeof(struct sock_filter) != 0 ||
        size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        snprintf(err, errlen, "seccomp: exported filter has an unexpected size (%zu bytes)", size);
        close(fd);
        return -1;
    }
    struct sock_filter *buf = malloc(size);
    if (buf == NULL) {
        snprintf(err, errlen, "seccomp: out of memory");
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(fd, (char *)buf + got, size - got, (off_t)got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "seccomp: cannot read the exported filter: %s",
                     r == 0 ? "short read" : strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    *insns = buf;
    *n = size / sizeof(struct sock_filter);
    return 0;
}

/* The hand-written prefix: a tiny assembler whose jumps name labels, resolved at the end. */
enum label { L_NEXT, L_KILL, L_ENOSYS, L_DENY, L_CONT, L_COUNT };

struct prefix {
    struct sock_filter insns[24];
    unsigned char jt[24], jf[24]; /* labels of jump instructions */
    size_t n;
    size_t at[L_COUNT];
};

static void emit(struct prefix *p, uint16_t code, uint32_t k, enum label jt, enum label jf)
{
    p->insns[p->n] = (struct sock_filter)BPF_STMT(code, k);
    p->jt[p->n] = (unsigned char)jt;
    p->jf[p->n] = (unsigned char)jf;
    p->n++;
}

static void place(struct prefix *p, enum label l)
{
    p->at[l] = p->n;
}

static void resolve(struct prefix *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (BPF_CLASS(p->insns[i].code) != BPF_JMP)
            continue;
        if (BPF_OP(p->insns[i].code) == BPF_JA) {
            p->insns[i].k = (uint32_t)(p->at[p->jt[i]] - i - 1);
            continue;
        }
        p->insns[i].jt = p->jt[i] == L_NEXT ? 0 : (unsigned char)(p->at[p->jt[i]] - i - 1);
        p->insns[i].jf = p->jf[i] == L_NEXT ? 0 : (unsigned char)(p->at[p->jf[i]] - i - 1);
    }
}

static void build_prefix(const struct config_sandbox *sb, int max_nr, int personality_nr,
                         struct prefix *p)
{
    uint32_t arch = seccomp_arch_native();
    size_t args0 = offsetof(struct seccomp_data, args[0]);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    args0 += 4; /* the low word of the 64-bit argument */
#endif

    memset(p, 0, sizeof(*p));
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), L_NEXT, L_NEXT);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, arch, L_NEXT, L_KILL);
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), L_NEXT, L_NEXT);
    /* -1 is what a tracer sets to skip a call; the kernel answers ENOSYS itself. */
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffU, L_CONT, L_NEXT);
    if (arch == SCMP_ARCH_X86_64)
        emit(p, BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, L_KILL, L_NEXT);
    emit(p, BPF_JMP | BPF_JGT | BPF_K, (uint32_t)max_nr, L_ENOSYS, L_NEXT);
    if (personality_nr >= 0) {
        emit(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)personality_nr, L_NEXT, L_CONT);
        emit(p, BPF_LD | BPF_W | BPF_ABS, (uint32_t)args0, L_NEXT, L_NEXT);
        emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffU, L_CONT, L_NEXT);
        emit(p, BPF_JMP | BPF_JSET | BPF_K, PERSONALITY_DENIED, L_DENY, L_CONT);
    } else {
        emit(p, BPF_JMP | BPF_JA, 0, L_CONT, L_NEXT);
    }
    place(p, L_KILL);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, L_NEXT, L_NEXT);
    place(p, L_ENOSYS);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS, L_NEXT, L_NEXT);
    place(p, L_DENY);
    emit(p, BPF_RET | BPF_K, tier_action(sb, TIER_EPERM), L_NEXT, L_NEXT);
    place(p, L_CONT);
    resolve(p);
}

/* Checks the manifest's names: -1 with a message for one libseccomp does not know at all. */
static int check_names(const char *key, char *const *names, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (native_nr(names[i]) != __NR_SCMP_ERROR)
            continue;
        const struct scmp_version *v = seccomp_version();
        snprintf(err, errlen,
                 "seccomp/%s: unknown system call \"%s\" (libseccomp %u.%u.%u does not know it)",
                 key, names[i], v->major, v->minor, v->micro);
        return -1;
    }
    return 0;
}

int sandbox_seccomp_compile(const struct config_sandbox *sb, struct sandbox_seccomp *out, char *err,
                            size_t errlen)
{
    scmp_filter_ctx ctx = NULL;
    struct sock_filter *body = NULL;
    size_t nbody = 0;
    int rc;

    out->insns = NULL;
    out->len = 0;
    if (check_names("deny", sb->seccomp_deny, sb->nseccomp_deny, err, errlen) == -1 ||
        check_names("allow", sb->seccomp_allow, sb->nseccomp_allow, err, errlen) == -1)
        return -1;
    if (in_list("execve", sb->seccomp_deny, sb->nseccomp_deny)) {
        snprintf(err, errlen,
                 "seccomp/deny: \"execve\" cannot be denied: the filter is loaded before the "
                 "server's own execve");
        return -1;
    }
    int max_nr = highest_known_nr();
    if (max_nr < 0) {
        snprintf(err, errlen, "seccomp: libseccomp knows no system call of this architecture");
        return -1;
    }

    ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        snprintf(err, errlen, "seccomp: seccomp_init failed");
        return -1;
    }
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: cannot set the bad-architecture action: %s", strerror(-rc));
        goto fail;
    }
    for (size_t i = 0; i < sb->nseccomp_deny; i++) {
        int nr = native_nr(sb->seccomp_deny[i]);
        if (nr < 0)
            continue; /* another architecture's syscall: nothing to deny here */
        rc = seccomp_rule_add(ctx, tier_action(sb, TIER_KILL), nr, 0);
        if (rc < 0) {
            snprintf(err, errlen, "seccomp/deny: cannot add \"%s\": %s", sb->seccomp_deny[i],
                     strerror(-rc));
            goto fail;
        }
    }
    int personality_nr = -1;
    for (size_t i = 0; i < NRULES; i++) {
        const struct rule *r = &default_rules[i];
        int nr = native_nr(r->name);
        if (nr < 0 || !rule_active(sb, r))
            continue;
        if (r->cond == COND_PERSONALITY) {
            personality_nr = nr;
            continue;
        }
        rc = add_rule(ctx, r, nr, tier_action(sb, r->tier));
        if (rc < 0) {
            snprintf(err, errlen, "seccomp: cannot add the rule for %s: %s", r->name,
                     strerror(-rc));
            goto fail;
        }
    }
    if (export_bpf(ctx, &body, &nbody, err, errlen) == -1)
        goto fail;
    seccomp_release(ctx);
    ctx = NULL;

    struct prefix pre;
    build_prefix(sb, max_nr, personality_nr, &pre);
    if (nbody + pre.n > BPF_MAXINSNS) {
        snprintf(err, errlen, "seccomp: the filter is too long (%zu instructions)", nbody + pre.n);
        free(body);
        return -1;
    }
    out->insns = malloc((nbody + pre.n) * sizeof(struct sock_filter));
    if (out->insns == NULL) {
        snprintf(err, errlen, "seccomp: out of memory");
        free(body);
        return -1;
    }
    memcpy(out->insns, pre.insns, pre.n * sizeof(struct sock_filter));
    memcpy(out->insns + pre.n, body, nbody * sizeof(struct sock_filter));
    out->len = (unsigned short)(nbody + pre.n);
    free(body);
    return 0;

fail:
    seccomp_release(ctx);
    return -1;
}

void sandbox_seccomp_free(struct sandbox_seccomp *f)
{
    if (f == NULL)
        return;
    free(f->insns);
    f->insns = NULL;
    f->len = 0;
}

int sandbox_seccomp_apply(const struct sandbox_seccomp *f)
{
    if (f == NULL || f->insns == NULL || f->len == 0) {
        errno = EINVAL;
        return -1;
    }
    /* Root could load a filter without no_new_privs; the sandbox order demands it first. */
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    if (nnp != 1) {
        if (nnp == 0)
            errno = EPERM;
        return -1;
    }
    /* Action "log" is the only one that compiles SECCOMP_RET_LOG; it also wants the refusals
     * that stay (ENOSYS, EAFNOSUPPORT) in the audit log. */
    unsigned long flags = 0;
    for (unsigned short i = 0; i < f->len; i++)
        if (f->insns[i].code == (BPF_RET | BPF_K) &&
            (f->insns[i].k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_LOG)
            flags = SECCOMP_FILTER_FLAG_LOG;
    struct sock_fprog prog = {.len = f->len, .filter = f->insns};
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) == 0 ? 0 : -1;
}

const char *sandbox_syscall_name(int nr)
{
    static _Thread_local char buf[80];
    uint32_t arch = SCMP_ARCH_NATIVE;
    const char *abi = "";
    char *s;

    if (nr < 0)
        return NULL;
    if (seccomp_arch_native() == SCMP_ARCH_X86_64 && ((unsigned)nr & X32_SYSCALL_BIT) != 0) {
        arch = SCMP_ARCH_X32;
        abi = " (x32)";
    } else if (seccomp_arch_native() == SCMP_ARCH_X86_64 &&
               ((unsigned)nr & SANDBOX_SECCOMP_NR_I386) != 0) {
        arch = SCMP_ARCH_X86;
        abi = " (i386)";
        nr &= ~SANDBOX_SECCOMP_NR_I386;
    }
    s = seccomp_syscall_resolve_num_arch(arch, nr);
    if (s == NULL)
        return NULL;
    snprintf(buf, sizeof(buf), "%s%s", s, abi);
    free(s);
    return buf;
}

/* Parses an unsigned number in base 10 or 16 that must end the token; -1 if it does not. */
static int parse_field(const char *s, size_t len, int base, unsigned long long *out)
{
    unsigned long long v = 0;
    if (len == 0 || len > 20)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int d;
        if (s[i] >= '0' && s[i] <= '9')
            d = s[i] - '0';
        else if (base == 16 && s[i] >= 'a' && s[i] <= 'f')
            d = s[i] - 'a' + 10;
        else
            return -1;
        if (v > (~0ULL - (unsigned)d) / (unsigned)base)
            return -1;
        v = v * (unsigned)base + (unsigned)d;
    }
    *out = v;
    return 0;
}

struct kill_record {
    unsigned long long seq, ts_us, pid, sig, arch, nr;
};

/* One /dev/kmsg record "prio,seq,ts,flags;audit: type=1326 ... pid=N ... syscall=NNN ...".
 * Only kernel records (facility 0) count: root can write user-facility lines to /dev/kmsg. The
 * audit fields themselves cannot be forged: comm and exe are hex-encoded when they contain
 * spaces. */
static int parse_kill_record(const char *rec, struct kill_record *k)
{
    unsigned long long prio;
    const char *p = rec, *end;
    unsigned long long *hdr[] = {&prio, &k->seq, &k->ts_us};

    for (size_t i = 0; i < 3; i++) {
        end = p + strcspn(p, ",;");
        if (*end != ',' || parse_field(p, (size_t)(end - p), 10, hdr[i]) == -1)
            return -1;
        p = end + 1;
    }
    if (prio >= 8 || (p = strchr(p, ';')) == NULL)
        return -1;
    p++;
    if (strncmp(p, "audit: type=1326 ", 17) != 0)
        return -1;
    unsigned seen = 0;
    while (*p != '\0' && *p != '\n') {
        size_t len = strcspn(p, " \n");
        static const struct {
            const char *key;
            int base;
            size_t off;
        } fields[] = {{"pid=", 10, offsetof(struct kill_record, pid)},
                      {"sig=", 10, offsetof(struct kill_record, sig)},
                      {"arch=", 16, offsetof(struct kill_record, arch)},
                      {"syscall=", 10, offsetof(struct kill_record, nr)}};
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            size_t kl = strlen(fields[i].key);
            if (len > kl && strncmp(p, fields[i].key, kl) == 0 &&
                parse_field(p + kl, len - kl, fields[i].base,
                            (unsigned long long *)((char *)k + fields[i].off)) == 0)
                seen |= 1U << i;
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    return seen == 0xf ? 0 : -1;
}

int sandbox_seccomp_killer(pid_t pid)
{
    static unsigned long long last_seq;
    static bool have_last;
    static char rec[KMSG_RECORD_MAX + 1];
    struct kill_record k, best = {0};
    bool found = false;
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
        return -1;
    unsigned long long now_us =
        (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000;
    unsigned long long window = (unsigned long long)KILLER_WINDOW_S * 1000000ULL;
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1)
        return -1;
    for (int i = 0; i < KMSG_MAX_READS; i++) {
        ssize_t r = read(fd, rec, KMSG_RECORD_MAX);
        if (r == -1 && (errno == EPIPE || errno == EINTR))
            continue; /* EPIPE: records overwritten under us; the next read resynchronises */
        if (r <= 0)
            break; /* EAGAIN: no more records */
        rec[r] = '\0';
        memset(&k, 0, sizeof(k));
        if (parse_kill_record(rec, &k) == -1 || k.sig != SIGSYS)
            continue;
        if (pid > 0 && k.pid != (unsigned long long)pid)
            continue;
        if (have_last && k.seq <= last_seq)
            continue;
        if (k.ts_us + window < now_us)
            continue;
        best = k;
        found = true;
    }
    close(fd);
    if (!found || best.nr > 0x7fffffffULL)
        return -1;
    last_seq = best.seq;
    have_last = true;
    int nr = (int)best.nr;
    if (best.arch == AUDIT_ARCH_I386 && seccomp_arch_native() == SCMP_ARCH_X86_64)
        nr |= SANDBOX_SECCOMP_NR_I386;
    return nr;
}

static const char *tier_text(const struct config_sandbox *sb, unsigned char tier)
{
    switch (tier) {
    case TIER_KILL:
        return sb->seccomp_action == CONFIG_SECCOMP_KILL    ? "kill the process"
               : sb->seccomp_action == CONFIG_SECCOMP_ERRNO ? "EPERM: action \"errno\""
                                                            : "logged, not refused: action \"log\"";
    case TIER_EPERM:
        return sb->seccomp_action == CONFIG_SECCOMP_LOG ? "logged, not refused: action \"log\""
                                                        : "EPERM";
    case TIER_ENOSYS:
        return "ENOSYS";
    default:
        return "EAFNOSUPPORT";
    }
}

/* Prints the names of a list that exist (or not) on this architecture. */
static void print_names(FILE *f, char *const *names, size_t n, bool native, const char **sep)
{
    for (size_t i = 0; i < n; i++) {
        if ((native_nr(names[i]) >= 0) != native)
            continue;
        fprintf(f, "%s%s", *sep, names[i]);
        *sep = ", ";
    }
}

static size_t count_names(char *const *names, size_t n, bool native)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (native_nr(names[i]) >= 0) == native;
    return c;
}

void sandbox_seccomp_describe(const struct config_sandbox *sb, FILE *f)
{
    const char *ind = "      ";
    const char *arch = seccomp_arch_native() == SCMP_ARCH_X86_64 ? "x86_64" : "native";
    int max_nr = highest_known_nr();

    fprintf(f, "%sarchitecture: %s only; other ABIs%s kill the process\n", ind, arch,
            seccomp_arch_native() == SCMP_ARCH_X86_64 ? " (i386 int 0x80, x32)" : "");
    fprintf(f, "%ssyscalls newer than libseccomp's table (nr > %d): ENOSYS\n", ind, max_nr);
    if (sb->nseccomp_deny > 0 && count_names(sb->seccomp_deny, sb->nseccomp_deny, true) > 0) {
        const char *sep = " ";
        fprintf(f, "%smanifest deny (%s):", ind, tier_text(sb, TIER_KILL));
        print_names(f, sb->seccomp_deny, sb->nseccomp_deny, true, &sep);
        fputc('\n', f);
    }
    for (size_t i = 0; i < NRULES; i++) {
        const struct rule *r = &default_rules[i];
        bool first_of_group = true;
        for (size_t j = 0; j < i; j++)
            if (strcmp(default_rules[j].group, r->group) == 0)
                first_of_group = false;
        if (!first_of_group)
            continue;
        const char *sep = " ";
        bool any = false;
        for (size_t j = i; j < NRULES; j++) {
            const struct rule *q = &default_rules[j];
            if (strcmp(q->group, r->group) != 0 || native_nr(q->name) < 0 || !rule_active(sb, q))
                continue;
            if (!any)
                fprintf(f, "%s%s (%s):", ind, r->group, tier_text(sb, r->tier));
            any = true;
            fprintf(f, "%s%s%s", sep, q->name, cond_text(q->cond));
            sep = ", ";
        }
        if (any && r->cond == COND_FAMILY)
            fprintf(f, " with a family other than AF_UNIX, AF_INET, AF_INET6, AF_NETLINK "
                       "(netlink other than NETLINK_ROUTE: EPROTONOSUPPORT)");
        if (any)
            fputc('\n', f);
    }
    if (count_names(sb->seccomp_allow, sb->nseccomp_allow, true) > 0) {
        const char *sep = " ";
        fprintf(f, "%sallowed by the manifest (default rules removed):", ind);
        print_names(f, sb->seccomp_allow, sb->nseccomp_allow, true, &sep);
        fputc('\n', f);
    }
    if (count_names(sb->seccomp_deny, sb->nseccomp_deny, false) +
            count_names(sb->seccomp_allow, sb->nseccomp_allow, false) >
        0) {
        const char *sep = " ";
        fprintf(f, "%snot on %s (ignored):", ind, arch);
        print_names(f, sb->seccomp_deny, sb->nseccomp_deny, false, &sep);
        print_names(f, sb->seccomp_allow, sb->nseccomp_allow, false, &sep);
        fputc('\n', f);
    }
    fprintf(f, "%severything else: allowed%s\n", ind,
            sb->seccomp_action == CONFIG_SECCOMP_LOG
                ? " (SECCOMP_FILTER_FLAG_LOG: every refusal is audited)"
                : "");
}
