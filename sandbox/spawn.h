/*
 * spawn.h — starting one stdio MCP server: everything between fork and execve.
 *
 * The caller (the privileged spawner) builds a struct spawn_plan up front — argv, envp, paths —
 * so that nothing after fork parses or allocates. The child applies each step in a fixed order;
 * a failed step is reported as {step, errno} on a close-on-exec status pipe and the child
 * _exits: it never continues half-configured, and never reaches execve with a step skipped.
 */
#ifndef MCPVISOR_SPAWN_H
#define MCPVISOR_SPAWN_H

#include <sys/types.h>

#define SPAWN_EXIT_FAILED 127 /* the child's exit status when a set-up step failed */

struct spawn_plan {
    const char *path;  /* absolute path of the program */
    char *const *argv; /* NULL-terminated, borrowed */
    char *const *envp; /* NULL-terminated, the complete environment, borrowed */
};

struct spawn_result {
    pid_t pid;
    int fd_stdin;  /* write end of the child's stdin; owned by the caller */
    int fd_stdout; /* read end of the child's stdout; owned by the caller */
    int fd_stderr; /* read end of the child's stderr; owned by the caller */
    char step[16]; /* on failure: the step that failed */
    int err;       /* on failure: its errno */
};

/*
 * Forks and execs per plan. Returns 0 with res->pid and the three pipe ends (close-on-exec,
 * non-blocking) once execve succeeded; -1 with res->step and res->err otherwise (the failed
 * child has been reaped).
 */
int spawn_start(const struct spawn_plan *plan, struct spawn_result *res);

#endif
