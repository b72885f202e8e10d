/*
 * caps.h — the child's identity and capabilities: from root to a tenant's uid/gid holding no
 * capability in any set, with no way back (locked securebits, empty bounding set).
 *
 * Owns: the bounding/ambient/securebits lock done while still root, the id drop, and the final
 * check that every capability set is empty.
 * Never: allocates, locks or uses stdio in the child-side functions (they run between clone and
 * execve; all are ASYNC-SIGNAL-SAFE raw syscalls); never goes through libcap (it allocates);
 * never lets the child run as uid or gid 0.
 *
 * Order in the child (SANDBOX-NOTES A.5 steps 12-14; pitfall 7: the bounding set can only be
 * dropped while CAP_SETPCAP is still effective):
 *     sandbox_caps_lock(last)  ->  sandbox_drop_ids(uid, gid)  ->  sandbox_caps_verify_empty(last)
 */
#ifndef MCPVISOR_CAPS_H
#define MCPVISOR_CAPS_H

#include <sys/types.h>

/*
 * Before fork, in the spawner (reads a file; not for the child): the highest capability number
 * the running kernel knows, from /proc/sys/kernel/cap_last_cap, else the CAP_LAST_CAP this was
 * compiled with. Always returns a value in 0..63.
 */
int sandbox_cap_last_cap(void);

/*
 * In the child, still root with CAP_SETPCAP effective. ASYNC-SIGNAL-SAFE (raw prctl).
 * Drops capabilities 0..cap_last_cap from the bounding set, clears the ambient set, and sets the
 * securebits NOROOT, NO_CAP_AMBIENT_RAISE and all four *_LOCKED bits, leaving NO_SETUID_FIXUP
 * and KEEP_CAPS clear (and locked so): the coming setresuid away from 0 then clears the
 * permitted, effective and ambient sets, and exec never grants root's capabilities again.
 * Returns 0, or -1 with errno (EINVAL for a cap_last_cap outside 0..63).
 */
int sandbox_caps_lock(int cap_last_cap);

/*
 * In the child, after sandbox_caps_lock. ASYNC-SIGNAL-SAFE (raw setgroups/setresgid/setresuid;
 * they change the calling thread only, which is the whole process in the single-threaded child).
 * setgroups(0, NULL), setresgid(gid, gid, gid), setresuid(uid, uid, uid), then checks with
 * getgroups/getresgid/getresuid that exactly those ids are in force.
 * Returns 0, or -1 with errno: EINVAL for uid or gid 0 or -1 (a sandboxed child is never root,
 * and -1 means "unchanged" to the kernel); EPERM when a check finds other ids.
 */
int sandbox_drop_ids(uid_t uid, gid_t gid);

/*
 * In the child, after sandbox_drop_ids. ASYNC-SIGNAL-SAFE (raw capset/capget/prctl).
 * Sets effective, permitted and inheritable to empty, then reads them back; also checks that
 * no capability 0..cap_last_cap is in the ambient or the bounding set. Returns 0 when all are
 * empty, else -1 with errno EPERM (or the failing syscall's errno).
 */
int sandbox_caps_verify_empty(int cap_last_cap);

#endif
