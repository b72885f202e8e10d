/*
 * policy.h — turning a manifest's `sandbox` section into what spawn.c applies: the mount list,
 * the Landlock rules mirroring it, rlimits and the compiled seccomp program. Built once per
 * manifest at start-up in the privileged spawner (it parses and allocates; the child must not).
 *
 * Also owns the machine's sandbox features (probed once): whether we are root, whether
 * unprivileged user namespaces work, the Landlock ABI, the cgroup v2 delegation, cap_last_cap.
 */
#ifndef MCPVISOR_POLICY_H
#define MCPVISOR_POLICY_H

#include <stdbool.h>
#include <stdio.h>

#include "cgroup.h"
#include "config.h"
#include "landlock.h"
#include "seccomp.h"
#include "spawn.h"

#define SANDBOX_DEFAULT_NOFILE 1024
#define SANDBOX_DEFAULT_NPROC  512
#define SANDBOX_NOBODY         65534

struct sandbox_features {
    bool root;        /* the spawner runs as root: tenant uids, no user namespace */
    bool userns;      /* unprivileged user namespaces work (used when not root) */
    int landlock_abi; /* 0: none */
    int cap_last_cap;
    struct sandbox_cgroup cgroup;
    char newroot[64]; /* empty directory each child builds its root on */
};

struct sandbox_profile {
    struct spawn_mount mounts[SPAWN_MAX_MOUNTS];
    size_t nmounts;
    struct sandbox_landlock_rule landlock[SANDBOX_LANDLOCK_MAX_RULES];
    size_t nlandlock;
    struct sandbox_seccomp seccomp;
    struct spawn_rlimits rl;
    bool network;
};

/* Probes the kernel; creates the (empty, private) new-root directory. Never fails hard: what is
 * missing is recorded for sandbox_features_report. */
void sandbox_features_probe(struct sandbox_features *f);
/* One log line per protection: what is in force on this machine and what is not. */
void sandbox_features_log(const struct sandbox_features *f);
/* Protections a manifest asks for that this machine cannot give (empty string: none). */
void sandbox_missing(const struct sandbox_features *f, const struct config_manifest *m, char *out,
                     size_t outlen);
void sandbox_features_cleanup(struct sandbox_features *f);

int sandbox_profile_build(const struct config_manifest *m, struct sandbox_profile *p, char *err,
                          size_t errlen);
void sandbox_profile_free(struct sandbox_profile *p);
/* The effective sandbox of a manifest on this machine, for `mcpvisor check`. */
void sandbox_profile_describe(const struct config_manifest *m, const struct sandbox_profile *p,
                              const struct sandbox_features *f, FILE *out);

#endif
