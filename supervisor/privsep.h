/*
 * privsep.h — the message protocol between the privileged spawner (parent) and the unprivileged
 * front, over a SOCK_SEQPACKET socketpair (message boundaries come from the socket type).
 *
 * Messages carry names, never commands: the spawner resolves "server S for tenant T" in its own
 * copy of the configuration. Every type has one exact size; a message of an unknown type or the
 * wrong size, truncated data or control data, or file descriptors on a type that carries none,
 * is a protocol violation and fatal for the peer (privsep_recv returns -1 with errno EPROTO).
 */
#ifndef MCPVISOR_PRIVSEP_H
#define MCPVISOR_PRIVSEP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

enum privsep_type {
    PRIVSEP_SPAWN = 1,        /* front → spawner: start server for tenant */
    PRIVSEP_SPAWNED = 2,      /* spawner → front: pid, with stdin/stdout/stderr fds */
    PRIVSEP_SPAWN_FAILED = 3, /* spawner → front: step and errno */
    PRIVSEP_EXITED = 4,       /* spawner → front: a child was reaped */
    PRIVSEP_KILL = 5,         /* front → spawner: kill one of the spawner's children */
    PRIVSEP_RELOAD = 6,       /* spawner → front: SIGHUP; a sealed memfd with the new bundle */
    PRIVSEP_AUDIT_FD = 7,     /* spawner → front: SIGHUP; the audit log reopened (logrotate) */
};

#define PRIVSEP_STEP_MAX 16

/* The tenant of a spawn for a manifest with isolation "shared": no tenant name can be it. */
#define PRIVSEP_SHARED_TENANT "*"

struct privsep_spawn {
    uint32_t type;
    uint32_t pad;
    uint64_t req;
    char server[CONFIG_NAME_MAX];
    char tenant[CONFIG_NAME_MAX];
};

struct privsep_spawned {
    uint32_t type;
    int32_t pid;
    uint64_t req;
};

struct privsep_spawn_failed {
    uint32_t type;
    int32_t err; /* errno of the failed step */
    uint64_t req;
    char step[PRIVSEP_STEP_MAX];
};

struct privsep_exited {
    uint32_t type;
    int32_t pid;
    int32_t status;     /* exit status when signal == 0 */
    int32_t signal;     /* terminating signal or 0 */
    int32_t syscall_nr; /* SIGSYS: the syscall the seccomp filter killed it for; -1 unknown */
    uint32_t pad;
};

struct privsep_kill {
    uint32_t type;
    int32_t pid;
};

struct privsep_reload {
    uint32_t type;
    uint32_t pad;
};

struct privsep_audit_fd {
    uint32_t type;
    uint32_t pad;
};

union privsep_msg {
    uint32_t type;
    struct privsep_spawn spawn;
    struct privsep_spawned spawned;
    struct privsep_spawn_failed spawn_failed;
    struct privsep_exited exited;
    struct privsep_kill kill;
    struct privsep_reload reload;
    struct privsep_audit_fd audit_fd;
};

/* Exact size of a message of `type`, or 0 for an unknown type. */
size_t privsep_size(uint32_t type);

/* Sends one message (its size from its type) and, if nfds > 0, fds with SCM_RIGHTS (borrowed:
 * the caller still closes them). Returns 0 or -1 with errno. */
int privsep_send(int sock, const union privsep_msg *msg, const int *fds, size_t nfds);

/*
 * Receives one message. fds (3 slots) receive the descriptors of a SPAWNED message (3), or a
 * RELOAD or AUDIT_FD message (1), close-on-exec,
 * owned by the caller. Returns 1 for a message, 0 on EOF, -1 with errno (EPROTO: the peer broke
 * the protocol; EAGAIN: nothing to read). Returns PRIVSEP_LOST_FDS for a well-formed message whose
 * descriptors the kernel could not install (the receiver is out of descriptors, MSG_CTRUNC):
 * msg is filled, *nfds is 0, and the message is one failed operation, not a broken channel.
 */
#define PRIVSEP_LOST_FDS 2
int privsep_recv(int sock, union privsep_msg *msg, int fds[3], size_t *nfds);

/* Copies a NUL-terminated name into a fixed field; -1 if it does not fit. */
int privsep_set_name(char *field, size_t fieldlen, const char *name);
/* Checks a received fixed field is NUL-terminated and non-empty. */
int privsep_name_ok(const char *field, size_t fieldlen);

#endif
