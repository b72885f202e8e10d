/*
 * front.h — the unprivileged front process: the libevent loop that owns listeners, sessions,
 * children's pipes and the privsep channel to the spawner. Never blocks; never sees a child's
 * command line or environment (the spawner resolves those).
 */
#ifndef MCPVISOR_FRONT_H
#define MCPVISOR_FRONT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frontenv.h"

/* Descriptors the front needs besides connections and sessions' child pipes (listeners, the
 * loop, the spawner's channel, the audit log, JWKS fetches, connections kept only to be refused).
 */
#define FRONT_FD_RESERVE 128

/* Fits limits.max_connections and limits.max_sessions (three pipes per session's child) into
 * nofile descriptors, lowering them when they do not fit. Returns 1 when it lowered them, 0 when
 * they fit, -1 when nofile cannot hold even a minimal front. */
int front_fit_descriptors(struct config_limits *lim, uint64_t nofile);

/* audit_fd: the audit log the parent opened (taken), or -1 without one. */
int front_run(const struct config *cfg, int sock, const int *lfds, size_t nl, int audit_fd);

/* Loads the configuration from a bundle memfd the parent sealed (closes fd); NULL with a
 * message. */
struct config *front_config_from_fd(int fd, char *err, size_t errlen);

/* The privsep channel to the spawner (front.c). */
/* Asks the spawner for server S for tenant T (NULL: S's shared child, isolation "shared").
 * Returns a handle to cancel with, or NULL. */
struct front_spawn *front_spawn(struct front *f, const struct config_manifest *m,
                                const struct config_tenant *t, front_spawn_cb cb, void *arg);
/* The requester no longer wants the child: a late SPAWNED is killed and its fds closed. */
void front_spawn_cancel(struct front *f, struct front_spawn *sp);
/* Asks the spawner to kill one of its children. */
void front_kill(struct front *f, pid_t pid);
/* Kills it after ms unless its exit is reported first. server and tenant (copied) name it in
 * the exit's audit record. */
void front_kill_after(struct front *f, pid_t pid, unsigned ms, const char *server,
                      const char *tenant);

#endif
