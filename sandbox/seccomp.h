/*
 * seccomp.h — the seccomp filter of a sandboxed child: compiled once per manifest in the spawner
 * (libseccomp, plus a short hand-written prefix), applied in the child as the last step before
 * execve, and read back after a SIGSYS death to name the syscall that killed it.
 *
 * The default profile (SANDBOX-NOTES.md A.6) allows everything except: other architectures and
 * x32 (kill), syscalls newer than libseccomp's table (ENOSYS), a kill tier (kexec, modules, raw
 * I/O, swap, and the manifest's `deny`), an EPERM tier (mount family, namespaces, ptrace family,
 * bpf, perf, userfaultfd, io_uring, keyrings, handle-based open, clocks, obsolete calls, and
 * argument-filtered clone, personality, ioctl, chmod, open, mknod), clone3 → ENOSYS and socket
 * families other than unix/inet/inet6/netlink → EAFNOSUPPORT. The manifest's `allow` removes a
 * syscall from every default rule; `action` turns the kill tier into EPERM ("errno") or logs
 * both tiers instead of refusing them ("log").
 */
#ifndef MCPVISOR_SECCOMP_H
#define MCPVISOR_SECCOMP_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "config.h"

/* Or'ed into sandbox_seccomp_killer's result when the fatal call came through the i386 entry
 * (int 0x80): its number is then an i386 one. x32 numbers carry their own 0x40000000 bit.
 * sandbox_syscall_name understands both. */
#define SANDBOX_SECCOMP_NR_I386 0x20000000

/* A compiled BPF program; insns is owned (sandbox_seccomp_free), len is the instruction count. */
struct sandbox_seccomp {
    struct sock_filter *insns;
    unsigned short len;
};

/*
 * Compiles the manifest's profile. Unknown syscall names in deny/allow → -1 with a message in err
 * naming the name; names libseccomp knows for other architectures only are accepted and ignored.
 * On success out owns a program (free it with sandbox_seccomp_free). Not async-signal-safe.
 */
int sandbox_seccomp_compile(const struct config_sandbox *sb, struct sandbox_seccomp *out, char *err,
                            size_t errlen);
/* Frees the program; f is left empty. NULL and empty programs are fine. */
void sandbox_seccomp_free(struct sandbox_seccomp *f);

/*
 * Loads the program with raw seccomp(2) SECCOMP_SET_MODE_FILTER (SECCOMP_FILTER_FLAG_LOG when the
 * program was compiled with action "log"). Async-signal-safe: for the child between fork and
 * execve. Requires no_new_privs already set (-1 with EPERM otherwise, even as root). 0 or -1.
 */
int sandbox_seccomp_apply(const struct sandbox_seccomp *f);

/*
 * Name of a syscall number on this architecture, or NULL. Numbers with the x32 bit or
 * SANDBOX_SECCOMP_NR_I386 are named for that ABI ("getpid (x32)", "getpid (i386)"). The string
 * is in a per-thread buffer, valid until the next call in the same thread.
 */
const char *sandbox_syscall_name(int nr);

/*
 * After a child died of SIGSYS: the syscall that killed it, from the kernel's audit record
 * ("audit: type=1326 ... pid=N ... sig=31 arch=... syscall=NNN") read non-blockingly from
 * /dev/kmsg. pid is the killed task's pid as the initial pid namespace sees it; pid <= 0 takes
 * the newest seccomp kill not reported yet (the spawner sees only the sandbox init, not the
 * server inside). Only records from the last 10 s count, and each is reported once. -1 if
 * /dev/kmsg is unreadable (needs CAP_SYSLOG), auditd consumes the records, or none matches.
 * Not thread-safe (remembers the last record reported).
 */
int sandbox_seccomp_killer(pid_t pid);

/* One line per rule group describing the effective profile, for `mcpvisor check`. */
void sandbox_seccomp_describe(const struct config_sandbox *sb, FILE *f);

#endif

/* libseccomp's header is also called seccomp.h, and -Isandbox puts this file first in the
 * search path, so `#include <seccomp.h>` finds it and never libseccomp's. seccomp.c (the only
 * user of libseccomp) defines SANDBOX_SECCOMP_IMPL and continues the search past this folder. */
#if defined(SANDBOX_SECCOMP_IMPL) && !defined(_SECCOMP_H)
#include_next <seccomp.h>
#endif
