/*
 * caps.c — capability lock, id drop and the empty-sets check (see caps.h).
 *
 * Owns: the exact securebits value and the order of the prctl/capset calls.
 * Invariant: after sandbox_caps_lock + sandbox_drop_ids the process holds no capability and can
 * gain none (bounding set empty, ambient raise forbidden, NOROOT locked).
 * Never: calls libcap or anything else that allocates, locks or uses stdio in the child-side
 * functions; never reports success from a check it could not perform.
 */
#include "caps.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT           47
#define PR_CAP_AMBIENT_IS_SET    1
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define CAPS_LOCK_BITS                                                                             \
    (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |                        \
     SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)

int sandbox_cap_last_cap(void)
{
    int fallback = CAP_LAST_CAP;
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return fallback;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    if (n <= 0)
        return fallback;
    int v = 0;
    ssize_t i = 0;
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) {
        v = v * 10 + (buf[i] - '0');
        if (v > 63)
            return fallback;
    }
    if (i == 0 || (i < n && buf[i] != '\n'))
        return fallback;
    return v;
}

int sandbox_caps_lock(int cap_last_cap)
{
    if (cap_last_cap < 0 || cap_last_cap > 63) {
        errno = EINVAL;
        return -1;
    }
    /* Needs CAP_SETPCAP, which is itself dropped from the bounding set here but stays
     * effective until the uid change. */
    for (int c = 0; c <= cap_last_cap; c++) {
        if (prctl(PR_CAPBSET_DROP, (unsigned long)c, 0, 0, 0) == -1)
            return -1;
    }
    /* setresuid clears ambient anyway; clearing first removes the doubt. EINVAL: a kernel
     * before 4.3 has no ambient set to clear. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 && errno != EINVAL)
        return -1;
    if (prctl(PR_SET_SECUREBITS, (unsigned long)CAPS_LOCK_BITS, 0, 0, 0) == -1)
        return -1;
    return 0;
}

int sandbox_drop_ids(uid_t uid, gid_t gid)
{
    if (uid == 0 || gid == 0 || uid == (uid_t)-1 || gid == (gid_t)-1) {
        errno = EINVAL;
        return -1;
    }
    /* Raw syscalls: glibc's wrappers broadcast to all threads through internal locks. Groups
     * first, then gid, then uid: after setresuid we could no longer change the others. */
    if (syscall(SYS_setgroups, 0, NULL) == -1)
        return -1;
    if (syscall(SYS_setresgid, gid, gid, gid) == -1)
        return -1;
    if (syscall(SYS_setresuid, uid, uid, uid) == -1)
        return -1;

    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (syscall(SYS_getresuid, &ru, &eu, &su) == -1 || syscall(SYS_getresgid, &rg, &eg, &sg) == -1)
        return -1;
    long ngroups = syscall(SYS_getgroups, 0, NULL);
    if (ngroups == -1)
        return -1;
    if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid ||
        ngroups != 0) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

int sandbox_caps_verify_empty(int cap_last_cap)
{
    if (cap_last_cap < 0 || cap_last_cap > 63) {
        errno = EINVAL;
        return -1;
    }
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    memset(&hdr, 0, sizeof(hdr));
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) == -1)
        return -1;

    memset(&hdr, 0, sizeof(hdr));
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    memset(data, 0xff, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) == -1)
        return -1;
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        if (data[i].effective != 0 || data[i].permitted != 0 || data[i].inheritable != 0) {
            errno = EPERM;
            return -1;
        }
    }

    for (int c = 0; c <= cap_last_cap; c++) {
        int amb = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long)c, 0, 0);
        if (amb == -1 && errno != EINVAL) /* EINVAL: no ambient set before Linux 4.3 */
            return -1;
        int bnd = prctl(PR_CAPBSET_READ, (unsigned long)c, 0, 0, 0);
        if (bnd == -1)
            return -1;
        if (amb == 1 || bnd == 1) {
            errno = EPERM;
            return -1;
        }
    }
    return 0;
}
