/*
 * landlock.c — Landlock ABI probe and the child's ruleset (see landlock.h).
 *
 * Owns: the mapping from ABI version to handled rights, and from a rule to its allowed rights.
 * Invariant: the ruleset handles every filesystem right the running ABI knows, so nothing the
 * kernel can restrict is left allowed by omission.
 * Never: allocates, locks or uses stdio in sandbox_landlock_restrict (it runs in the child after
 * clone); never skips a rule for any reason other than "the path does not exist".
 *
 * glibc 2.36 has no Landlock wrappers and Debian 12's <linux/landlock.h> (6.1) stops at REFER,
 * so the syscalls are raw and the newer rights are defined here.
 */
#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13) /* ABI 2 */
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#endif

/* ABI 1: EXECUTE (bit 0) .. MAKE_SYM (bit 12). */
#define LL_ABI1_FS ((LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1)

/* Rights that make sense on a file (the kernel refuses the others on a non-directory). */
#define LL_FILE_RIGHTS                                                                             \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)

/* A read-only rule: read files, list directories, execute. */
#define LL_READ_RIGHTS                                                                             \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)

/*
 * Every filesystem right the given ABI knows. ABI 4 added network rights, 6 scopes and 7 audit
 * flags: none of those is a filesystem right, so 5 and later share one set. An ABI newer than
 * this code may know more rights; those stay unhandled until this table learns them.
 */
static uint64_t handled_fs(int abi)
{
    uint64_t fs = LL_ABI1_FS;
    if (abi >= 2)
        fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return fs;
}

int sandbox_landlock_abi(void)
{
    long v = syscall(__NR_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (v < 1 || v > 1000) /* -1: ENOSYS (not built) or EOPNOTSUPP (disabled at boot) */
        return 0;
    return (int)v;
}

/* Closes fd keeping errno (the caller is reporting an earlier failure). */
static void close_keep_errno(int fd)
{
    int saved = errno;
    (void)close(fd);
    errno = saved;
}

/*
 * Adds one rule. Returns 0 (added, or skipped because the path does not exist) or -1 with errno.
 * Async-signal-safe.
 */
static int add_rule(int ruleset, const struct sandbox_landlock_rule *r, uint64_t handled)
{
    if (r->path == NULL || r->path[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    int fd = open(r->path, O_PATH | O_CLOEXEC);
    if (fd == -1) {
        /* A missing path has nothing beneath it to grant; ENOTDIR is "a parent is a file". */
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == -1) {
        close_keep_errno(fd);
        return -1;
    }
    uint64_t allowed = r->write ? handled : (LL_READ_RIGHTS & handled);
    if (!S_ISDIR(st.st_mode))
        allowed &= LL_FILE_RIGHTS;

    struct landlock_path_beneath_attr pb;
    memset(&pb, 0, sizeof(pb));
    pb.allowed_access = allowed;
    pb.parent_fd = fd;
    long rc = syscall(__NR_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    if (rc == -1) {
        close_keep_errno(fd);
        return -1;
    }
    (void)close(fd);
    return 0;
}

int sandbox_landlock_restrict(const struct sandbox_landlock_rule *rules, size_t n, int abi)
{
    if (abi < 1) {
        errno = EOPNOTSUPP;
        return -1;
    }
    if (n > SANDBOX_LANDLOCK_MAX_RULES) {
        errno = E2BIG;
        return -1;
    }
    if (n > 0 && rules == NULL) {
        errno = EINVAL;
        return -1;
    }
    /*
     * The kernel also accepts CAP_SYS_ADMIN instead of no_new_privs; we do not, so that the
     * documented order (NNP, then Landlock) holds even in a child that still has privileges.
     */
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    if (nnp == -1)
        return -1;
    if (nnp != 1) {
        errno = EPERM;
        return -1;
    }

    uint64_t handled = handled_fs(abi);
    /* Only the first field: the older struct is a valid prefix of every newer one. */
    struct landlock_ruleset_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.handled_access_fs = handled;
    long ruleset = syscall(__NR_landlock_create_ruleset, &attr, sizeof(attr.handled_access_fs), 0);
    if (ruleset == -1)
        return -1;

    for (size_t i = 0; i < n; i++) {
        if (add_rule((int)ruleset, &rules[i], handled) == -1) {
            close_keep_errno((int)ruleset);
            return -1;
        }
    }
    if (syscall(__NR_landlock_restrict_self, (int)ruleset, 0) == -1) {
        close_keep_errno((int)ruleset);
        return -1;
    }
    (void)close((int)ruleset);
    return 0;
}
