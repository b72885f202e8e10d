/*
 * test_plan.c — the spawn plan shared by the spawner and `mcpvisor pin` (supervisor/plan.c):
 * ids per tenant and mode, the profile and features carried over, the cgroup hook and the
 * set-up deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "plan.h"

static char *argv_[] = {"/usr/bin/server", "--stdio", NULL};
static char *envp_[] = {"A=1", NULL};

struct fixture {
    struct sandbox_features feat;
    struct sandbox_profile prof;
    struct config_manifest m;
    struct config_tenant owned, shared;
    struct config_limits limits;
    struct spawn_plan plan;
    struct plan_cgroup cg;
};

static struct fixture fx;

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    fx.feat.root = true;
    fx.feat.userns = true;
    fx.feat.landlock_abi = 4;
    fx.feat.cap_last_cap = 40;
    fx.feat.cgroup.available = true;
    snprintf(fx.feat.newroot, sizeof(fx.feat.newroot), "/run/mcpvisor/root");
    fx.prof.nmounts = 3;
    fx.prof.nlandlock = 2;
    fx.prof.network = true;
    fx.prof.rl.set_nproc = true;
    fx.prof.rl.nproc = 77;
    fx.m.name = "files";
    fx.m.argv = argv_;
    fx.m.sandbox.memory_mb = 256;
    fx.owned = (struct config_tenant){.name = "acme", .has_ids = true, .uid = 2001, .gid = 3001};
    fx.shared = (struct config_tenant){.name = "guests"};
    fx.limits.spawn_timeout_ms = 1234;
    return 0;
}

static void build(const struct config_tenant *t, uint64_t id)
{
    plan_build(&fx.plan, &fx.cg, &fx.feat, &fx.prof, &fx.m, t, envp_, &fx.limits, id);
}

static void root_runs_a_tenant_as_its_own_ids(void **state)
{
    (void)state;
    build(&fx.owned, 7);
    assert_true(fx.plan.sandbox);
    assert_false(fx.plan.userns);
    assert_int_equal(fx.plan.uid, 2001);
    assert_int_equal(fx.plan.gid, 3001);
    assert_int_equal(fx.plan.outer_uid, geteuid());
    assert_int_equal(fx.plan.outer_gid, getegid());
}

static void root_runs_a_tenant_without_ids_or_no_tenant_as_nobody(void **state)
{
    (void)state;
    build(&fx.shared, 1);
    assert_int_equal(fx.plan.uid, SANDBOX_NOBODY);
    assert_int_equal(fx.plan.gid, SANDBOX_NOBODY);
    assert_string_equal(fx.cg.tenant, "guests");
    build(NULL, 1);
    assert_int_equal(fx.plan.uid, SANDBOX_NOBODY);
    assert_int_equal(fx.plan.gid, SANDBOX_NOBODY);
    assert_string_equal(fx.cg.tenant, PLAN_NO_TENANT);
}

static void unprivileged_runs_as_us_in_a_user_namespace(void **state)
{
    (void)state;
    fx.feat.root = false;
    build(&fx.owned, 1);
    assert_true(fx.plan.sandbox);
    assert_true(fx.plan.userns);
    assert_int_equal(fx.plan.uid, geteuid());
    assert_int_equal(fx.plan.gid, getegid());
    /* No user namespaces either: the declared weaker mode, no sandbox. */
    fx.feat.userns = false;
    build(&fx.owned, 1);
    assert_false(fx.plan.sandbox);
    assert_false(fx.plan.userns);
}

static void no_new_root_means_no_sandbox(void **state)
{
    (void)state;
    fx.feat.newroot[0] = '\0';
    build(&fx.owned, 1);
    assert_false(fx.plan.sandbox);
}

static void profile_features_and_limits_are_carried_over(void **state)
{
    (void)state;
    build(&fx.owned, 1);
    assert_string_equal(fx.plan.path, "/usr/bin/server");
    assert_ptr_equal(fx.plan.argv, argv_);
    assert_ptr_equal(fx.plan.envp, envp_);
    assert_true(fx.plan.network);
    assert_ptr_equal(fx.plan.newroot, fx.feat.newroot);
    assert_ptr_equal(fx.plan.mounts, fx.prof.mounts);
    assert_int_equal(fx.plan.nmounts, 3);
    assert_true(fx.plan.rl.set_nproc);
    assert_int_equal(fx.plan.rl.nproc, 77);
    assert_int_equal(fx.plan.cap_last_cap, 40);
    assert_ptr_equal(fx.plan.seccomp, &fx.prof.seccomp);
    assert_ptr_equal(fx.plan.landlock, fx.prof.landlock);
    assert_int_equal(fx.plan.nlandlock, 2);
    assert_int_equal(fx.plan.landlock_abi, 4);
    assert_int_equal(fx.plan.setup_timeout_ms, 1234);
}

static void cgroup_hook_only_with_a_delegated_tree(void **state)
{
    (void)state;
    build(&fx.owned, 42);
    assert_non_null(fx.plan.before_go);
    assert_ptr_equal(fx.plan.before_go_arg, &fx.cg);
    assert_ptr_equal(fx.cg.feat, &fx.feat);
    assert_string_equal(fx.cg.tenant, "acme");
    assert_string_equal(fx.cg.server, "files");
    assert_int_equal(fx.cg.id, 42);
    assert_int_equal(fx.cg.memory_mb, 256);
    assert_int_equal(fx.cg.pids_max, 77);
    assert_string_equal(fx.cg.path, "");
    fx.feat.cgroup.available = false;
    build(&fx.owned, 42);
    assert_null(fx.plan.before_go);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(root_runs_a_tenant_as_its_own_ids, setup),
        cmocka_unit_test_setup(root_runs_a_tenant_without_ids_or_no_tenant_as_nobody, setup),
        cmocka_unit_test_setup(unprivileged_runs_as_us_in_a_user_namespace, setup),
        cmocka_unit_test_setup(no_new_root_means_no_sandbox, setup),
        cmocka_unit_test_setup(profile_features_and_limits_are_carried_over, setup),
        cmocka_unit_test_setup(cgroup_hook_only_with_a_delegated_tree, setup),
    };
    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
