/*
 * plan.c — the spawn plan of a manifest's server for a tenant (see plan.h). Nothing here parses
 * or allocates: it only points into what start-up compiled.
 */
#include "plan.h"

#include <unistd.h>

#include "cgroup.h"

/* Between clone and "go": the child is placed in its own leaf before it runs anything. */
static int cgroup_enter(void *arg, pid_t pid)
{
    struct plan_cgroup *x = arg;
    return sandbox_cgroup_enter(&x->feat->cgroup, x->tenant, x->server, x->id, x->memory_mb,
                                x->pids_max, pid, x->path, sizeof(x->path));
}

void plan_build(struct spawn_plan *plan, struct plan_cgroup *cg,
                const struct sandbox_features *feat, const struct sandbox_profile *prof,
                const struct config_manifest *m, const struct config_tenant *t, char *const *envp,
                const struct config_limits *limits, uint64_t cgroup_id)
{
    *cg = (struct plan_cgroup){
        .feat = feat,
        .tenant = t != NULL ? t->name : PLAN_NO_TENANT,
        .server = m->name,
        .id = cgroup_id,
        .memory_mb = m->sandbox.memory_mb,
        .pids_max = prof->rl.nproc,
    };
    /* Every tenant has ids by now (given, or assigned at start: tenantids.c); only a child of
     * no tenant (pin, a "shared" server) runs as nobody. */
    bool own_ids = t != NULL && t->has_ids;
    bool sandboxed = feat->root || feat->userns;
    *plan = (struct spawn_plan){
        .path = m->argv[0],
        .argv = m->argv,
        .envp = envp,
        .sandbox = sandboxed && feat->newroot[0] != '\0',
        .userns = !feat->root && feat->userns,
        .uid = feat->root ? (own_ids ? t->uid : SANDBOX_NOBODY) : geteuid(),
        .gid = feat->root ? (own_ids ? t->gid : SANDBOX_NOBODY) : getegid(),
        .outer_uid = geteuid(),
        .outer_gid = getegid(),
        .network = prof->network,
        .newroot = feat->newroot,
        .mounts = prof->mounts,
        .nmounts = prof->nmounts,
        .rl = prof->rl,
        .cap_last_cap = feat->cap_last_cap,
        .seccomp = &prof->seccomp,
        .landlock = prof->landlock,
        .nlandlock = prof->nlandlock,
        .landlock_abi = feat->landlock_abi,
        .before_go = feat->cgroup.available ? cgroup_enter : NULL,
        .before_go_arg = cg,
        .setup_timeout_ms = limits->spawn_timeout_ms,
    };
}
