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

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* Runs until the front exits. `sock` is the spawner's end of the socketpair (borrowed),
 * `front` the front's pid, `path` the configuration file (re-read on SIGHUP). Returns the
 * process exit code. */
struct sandbox_features;
struct sandbox_profile;
int spawner_run(const struct config *cfg, int sock, pid_t front, const char *path,
                const struct sandbox_features *feat, const struct sandbox_profile *prof);

/* Validates the configuration at path and returns a sealed memfd holding its bundle (every file
 * it read), for the front; -1 with a message. */
int spawner_bundle_memfd(const char *path, char *err, size_t errlen);

/* Opens the audit log for appending (created 0600 when missing; a symlink or a file that is not
 * regular is refused). Returns the fd or -1 with a message. */
int spawner_audit_open(const char *path, char *err, size_t errlen);

#endif
