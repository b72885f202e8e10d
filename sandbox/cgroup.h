/*
 * cgroup.h — cgroup v2 leaves for children: one per child, under a subtree mcpvisor was
 * delegated, so memory_mb and nproc are enforced by the kernel for the child and everything it
 * forks, and the whole tree can be killed in one write when the child ends.
 *
 * Owns: finding and preparing the delegated subtree at start-up, the leaf's life cycle
 * (create, limit, enter, kill, remove).
 * Never: runs in the child (everything here is the privileged spawner's work, before the child
 * is released or after it is reaped); never writes outside the cgroup it was delegated; never
 * pretends a limit is in force: no subtree means `available` is false with the reason in `why`,
 * and a limit that cannot be written fails the spawn.
 *
 * Layout (the "no internal processes" rule forbids enabling controllers in a cgroup that holds
 * processes, so the children's tree is never an ancestor of the spawner's own cgroup):
 *
 *   D/                             the delegated cgroup (systemd Delegate=yes), no processes
 *   D/mcpvisor-supervisor/         the spawner and the front process      (scheme "move")
 *   D/mcpvisor-children/           root: memory and pids enabled
 *   D/mcpvisor-children/<tenant>/  created on demand, memory and pids enabled
 *   D/mcpvisor-children/<tenant>/<server>-<id>/   one leaf per child, the limits
 *
 * D is chosen by sandbox_cgroup_detect_at from our own cgroup C (/proc/self/cgroup "0::C"):
 *   "sibling": C's parent carries systemd's delegation mark (trusted.delegate or user.delegate,
 *              e.g. DelegateSubgroup=supervisor put us in a leaf of the unit's cgroup): D is the
 *              parent; we already sit in a leaf beside the children's tree, nothing moves.
 *   "move":    C itself is delegated (marked; or, when not root, owned by us with
 *              cgroup.subtree_control and cgroup.procs writable; or C is our cgroup namespace's
 *              root, as in a container): D = C, and detection moves the calling process into
 *              D/mcpvisor-supervisor so D holds no process.
 *   "root":    C is the real root of the hierarchy (no cgroup.type file), which the rule exempts:
 *              D = C, nothing moves. Needs root.
 * D must offer the memory and pids controllers (its cgroup.controllers); cpu is reported but not
 * used (no manifest key maps to cpu.max; cpu_s is RLIMIT_CPU).
 */
#ifndef MCPVISOR_CGROUP_H
#define MCPVISOR_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct sandbox_cgroup {
    bool available; /* root exists, with memory and pids enabled for its subtree */
    char root[512]; /* D/mcpvisor-children when available */
    char why[256];  /* when not available: a sentence saying what is missing */
    bool memory;    /* D offers the controller (cgroup.controllers) */
    bool pids;
    bool cpu;
};

/*
 * Start-up, in the privileged spawner, BEFORE it forks any other process (the front): in the
 * "move" scheme it moves the calling process into D/mcpvisor-supervisor, and the move only
 * frees D if nothing else is left in it. Not async-signal-safe.
 * Looks for the unified hierarchy at /sys/fs/cgroup (if it is cgroup2) or /sys/fs/cgroup/unified
 * (hybrid hosts), then does sandbox_cgroup_detect_at with /proc/self/cgroup. Never fails hard:
 * on any problem cg->available is false and cg->why says what is missing.
 */
void sandbox_cgroup_detect(struct sandbox_cgroup *cg);

/*
 * The same with the hierarchy's mount point and the /proc/self/cgroup file given (tests point
 * them at a fake tree; outside cgroupfs, files the kernel would provide are created as plain
 * files). mount NULL means "no cgroup v2 hierarchy is mounted". Same side effects as above.
 */
void sandbox_cgroup_detect_at(struct sandbox_cgroup *cg, const char *mount,
                              const char *self_cgroup_file);

/*
 * In the spawner, after clone and before the child is released. Not async-signal-safe.
 * Creates <root>/<tenant>/ if needed (controllers enabled in its cgroup.subtree_control) and the
 * leaf <root>/<tenant>/<server>-<id>/, writes memory.max (memory_mb MiB) and memory.swap.max 0
 * when memory_mb > 0, pids.max when pids_max > 0, memory.oom.group 1 (an OOM kill takes the
 * whole server, not a random helper), then moves pid into the leaf (cgroup.procs).
 * tenant and server are single path components (no '/', not starting with '.').
 * path_out (outlen bytes) receives the leaf's path, for sandbox_cgroup_release.
 * Returns 0, or -1 with errno (EOPNOTSUPP when !cg->available or a needed controller is missing,
 * EINVAL, ENAMETOOLONG, or a failing syscall's); on failure the leaf has been removed again.
 */
int sandbox_cgroup_enter(const struct sandbox_cgroup *cg, const char *tenant, const char *server,
                         uint64_t id, uint64_t memory_mb, uint64_t pids_max, pid_t pid,
                         char *path_out, size_t outlen);

/*
 * In the spawner, when the child has been reaped. Not async-signal-safe; may block up to about
 * two seconds. Kills everything left in the leaf (cgroup.kill, or SIGKILL to each pid in
 * cgroup.procs on kernels before 5.14), waits (poll on cgroup.events, bounded) until it is no
 * longer populated, then removes it. Failures are logged, not returned: there is nobody to tell.
 */
void sandbox_cgroup_release(const char *path);

#endif
