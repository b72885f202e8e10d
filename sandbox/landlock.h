/*
 * landlock.h — the Landlock layer of a child's sandbox: a second, kernel-enforced copy of the
 * filesystem view the mount namespace already builds, so that a mistake in the mounts (or a
 * mount the server manages to make) still leaves it unable to touch anything outside its rules.
 *
 * Owns: probing the ABI at start-up, and building + enforcing one ruleset in the child.
 * Never: allocates, takes locks or uses stdio on the child's path (it runs between clone and
 * execve); never handles network rights (the net namespace does that); never "best-efforts" a
 * failure away — the caller decides whether a kernel without Landlock is acceptable (pitfall 16:
 * record the ABI in force per spawn and fail closed when the profile demands it).
 */
#ifndef MCPVISOR_LANDLOCK_H
#define MCPVISOR_LANDLOCK_H

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_LANDLOCK_MAX_RULES 64

struct sandbox_landlock_rule {
    const char *path; /* absolute, as seen by the child (after pivot_root); borrowed */
    bool write;       /* true: every handled right beneath path; false: read + execute only */
};

/*
 * Start-up, in the spawner, once (the result goes into every spawn plan). One syscall, so also
 * async-signal-safe. Returns the kernel's Landlock ABI version (1, 2, ...), or 0 when Landlock is
 * not available (not built in, or disabled at boot: ENOSYS / EOPNOTSUPP).
 */
int sandbox_landlock_abi(void);

/*
 * In the child, after pivot_root and PR_SET_NO_NEW_PRIVS. ASYNC-SIGNAL-SAFE: raw syscalls, open,
 * fstat and close only; no malloc, no stdio, no locks.
 *
 * Builds a ruleset that handles every filesystem right `abi` knows (1: the 13 original rights;
 * 2: + REFER; 3 and 4: + TRUNCATE; 5 and later: + IOCTL_DEV), adds one path-beneath rule per
 * entry (a path that does not exist is skipped; on a non-directory only the file rights apply),
 * then restricts the calling thread, and so everything it execs, with landlock_restrict_self.
 * Rights not granted by some rule are denied beneath "/" (EACCES).
 *
 * rules: borrowed, n <= SANDBOX_LANDLOCK_MAX_RULES (n == 0 denies the whole filesystem).
 * Returns 0, or -1 with errno: EOPNOTSUPP (abi < 1), E2BIG (too many rules), EPERM
 * (no_new_privs not set), EINVAL (bad arguments), or the errno of the failing syscall.
 */
int sandbox_landlock_restrict(const struct sandbox_landlock_rule *rules, size_t n, int abi);

#endif
