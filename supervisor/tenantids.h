/*
 * tenantids.h — a uid and gid of its own for every tenant the configuration gives none.
 *
 * Tenants without `uid`/`gid` used to share nobody: one RLIMIT_NPROC, one set of files and
 * signals, with each other and with a front that falls back to nobody. Each now gets an id from
 * `tenant_ids` (from..to), kept in `tenant_ids.state_file` so it survives restarts, and never
 * handed to anyone else: not another tenant (a removed one's stays reserved), not the front, not
 * an account or group the system knows.
 */
#ifndef MCPVISOR_TENANTIDS_H
#define MCPVISOR_TENANTIDS_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

#define TENANTIDS_STATE_MAX (1u << 20) /* the state file is refused beyond this */

/*
 * Gives every tenant of cfg without ids one (uid and gid the same number), reading and updating
 * cfg->tenant_ids_state. front_uid/front_gid are never given. Runs as root in the parent, before
 * the spawner. Returns 0, or -1 with a sentence in err (range exhausted, state unreadable or
 * unwritable): the daemon must not start rather than share ids.
 */
int tenantids_assign(struct config *cfg, uid_t front_uid, gid_t front_gid, char *err,
                     size_t errlen);

#endif
