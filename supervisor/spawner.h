/*
 * spawner.h — the privileged parent's loop after the front is started.
 *
 * Single-threaded and small: it parses only fixed-size privsep messages, resolves every request
 * in its own configuration, starts only declared servers for tenants allowed to use them, reaps
 * its children, reports their exits, and kills only its own children. If the front dies it
 * kills every child and exits non-zero, so nothing runs unsupervised.
 */
#ifndef MCPVISOR_SPAWNER_H
#define MCPVISOR_SPAWNER_H

#include <sys/types.h>

#include "config.h"

/* Runs until the front exits. `sock` is the spawner's end of the socketpair (borrowed),
 * `front` the front's pid. Returns the process exit code. */
int spawner_run(const struct config *cfg, int sock, pid_t front);

#endif
