/*
 * spawn.h — starting one stdio MCP server: everything between fork and execve.
 *
 * The caller (the privileged spawner) builds a struct spawn_plan up front — argv, envp, the
 * mount list, ids, rlimits, the compiled seccomp program, the Landlock rules — so that nothing
 * after clone parses or allocates. The child applies each step in the fixed order of DESIGN.md;
 * a failed step is reported as {step, errno} on a close-on-exec status pipe and the child
 * _exits: it never continues half-confined, and never reaches execve with a step skipped.
 */
#ifndef MCPVISOR_SPAWN_H
#define MCPVISOR_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "landlock.h"
#include "seccomp.h"

#define SPAWN_EXIT_FAILED 127 /* the child's exit status when a set-up step failed */
#define SPAWN_MAX_MOUNTS  64
#define SPAWN_SIGNAL_BASE 128 /* the sandbox init exits 128+N when the server died of signal N */

enum spawn_mount_kind {
    SPAWN_MOUNT_RO = 0, /* read-only bind of the same host path */
    SPAWN_MOUNT_RW,     /* read-write bind */
    SPAWN_MOUNT_TMPFS,  /* a fresh tmpfs */
    SPAWN_MOUNT_LINK,   /* a symlink (host /bin → usr/bin and the like) */
};

struct spawn_mount {
    enum spawn_mount_kind kind;
    char path[256];   /* the path, the same inside and outside */
    char target[256]; /* SPAWN_MOUNT_LINK: the link's content */
    bool is_dir;      /* binds: a directory (else a file) */
    bool implicit;    /* mcpvisor's own choice (runtime files, the command's folder): yields to
                         any bind the manifest makes around it */
};

struct spawn_rlimits {
    bool set_cpu, set_nofile, set_nproc, set_fsize, set_as;
    rlim_t cpu_s, nofile, nproc, fsize, as_bytes;
};

struct spawn_plan {
    const char *path;  /* absolute path of the program */
    char *const *argv; /* NULL-terminated, borrowed */
    char *const *envp; /* NULL-terminated, the complete environment, borrowed */

    bool sandbox;    /* false only where a test or a weaker, declared mode asks */
    bool userns;     /* unprivileged spawner: a user namespace maps our ids */
    uid_t uid, gid;  /* the child's ids (root mode) */
    uid_t outer_uid; /* userns mode: our uid and gid, mapped to themselves */
    gid_t outer_gid;
    bool network;        /* manifest network "host"; else a fresh net namespace (lo only) */
    const char *newroot; /* an empty directory to build the root on (private to the ns) */
    const struct spawn_mount *mounts;
    size_t nmounts;
    struct spawn_rlimits rl;
    int cap_last_cap;
    const struct sandbox_seccomp *seccomp; /* NULL: no filter (only when sandbox is false) */
    const struct sandbox_landlock_rule *landlock;
    size_t nlandlock;
    int landlock_abi; /* 0: not available on this kernel */
    /* Called in the parent between clone and "go" (cgroup placement); may be NULL. Returns -1
     * with errno to abort the spawn (the child is killed). */
    int (*before_go)(void *arg, pid_t pid);
    void *before_go_arg;
    /* Time the child may take from "go" to execve; beyond it, it is killed and the spawn fails
     * with step "setup" and ETIMEDOUT. 0: no deadline. */
    uint32_t setup_timeout_ms;
};

struct spawn_result {
    pid_t pid;
    pid_t server_pid; /* the server's host pid (the child of the sandbox init), or pid */
    int fd_stdin;     /* write end of the child's stdin; owned by the caller */
    int fd_stdout;    /* read end of the child's stdout; owned by the caller */
    int fd_stderr;    /* read end of the child's stderr; owned by the caller */
    char step[16];    /* on failure: the step that failed */
    int err;          /* on failure: its errno */
};

/*
 * Clones and execs per plan. Returns 0 with res->pid and the three pipe ends (close-on-exec,
 * non-blocking) once execve succeeded; -1 with res->step and res->err otherwise (the failed
 * child has been reaped).
 */
int spawn_start(const struct spawn_plan *plan, struct spawn_result *res);

#endif
