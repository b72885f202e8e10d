/*
 * plan.h — how a manifest's server is started for a tenant on this machine: the one builder of
 * struct spawn_plan. The daemon's spawner and `mcpvisor pin` / `check` both use it, so what pin
 * listed and verified is the server as production runs it (same ids, sandbox, limits, cgroup
 * and set-up deadline).
 */
#ifndef MCPVISOR_PLAN_H
#define MCPVISOR_PLAN_H

#include <stdint.h>

#include "config.h"
#include "policy.h"
#include "spawn.h"

/* Cgroup folder for a child started without a tenant (pin, for a server no tenant may use). */
#define PLAN_NO_TENANT "mcpvisor-pin"

/* The cgroup hook's state (plan->before_go_arg). */
struct plan_cgroup {
    const struct sandbox_features *feat;
    const char *tenant, *server;
    uint64_t id, memory_mb, pids_max;
    char path[512]; /* the leaf once entered, for sandbox_cgroup_release; else "" */
};

/*
 * Fills *plan to start m for tenant t on a machine with feat, under m's compiled profile prof,
 * with the complete environment envp (childenv_build) and limits' set-up deadline.
 * t may be NULL only for pin listing a server no tenant may use: it then runs as nobody (root)
 * and its leaf goes under PLAN_NO_TENANT. cgroup_id numbers the leaf (<server>-<id>); it must be
 * unique among the caller's live leaves. cg holds the hook's state and fills cg->path: it and
 * every borrowed pointer must outlive spawn_begin / spawn_start.
 */
void plan_build(struct spawn_plan *plan, struct plan_cgroup *cg,
                const struct sandbox_features *feat, const struct sandbox_profile *prof,
                const struct config_manifest *m, const struct config_tenant *t, char *const *envp,
                const struct config_limits *limits, uint64_t cgroup_id);

#endif
