/*
 * childenv.h — building a child's complete environment (manifest env + tenant secrets).
 */
#ifndef MCPVISOR_CHILDENV_H
#define MCPVISOR_CHILDENV_H

#include <stddef.h>

#include "config.h"

#define CHILDENV_SECRET_MAX (64u << 10)
#define CHILDENV_MAX        256 /* entries, including the terminating NULL */

/*
 * Fills envp (cap entries, NULL-terminated on return) with malloc'ed "NAME=value" strings: the
 * manifest's env, then each secret read from t's secrets_dir. A secret must be a regular file
 * (no symlink) owned by us and readable by nobody else, at most CHILDENV_SECRET_MAX bytes, in a
 * folder owned by us that nobody else may write to. On failure returns -1 with errno, *step
 * ("env" or "secrets") and a key=value explanation in why that names the variable and file but
 * never the value; envp is then empty.
 */
int childenv_build(const struct config_manifest *m, const struct config_tenant *t, char **envp,
                   size_t cap, const char **step, char *why, size_t whylen);
/* Wipes and frees the entries (envp stays valid and empty). */
void childenv_free(char **envp);

#endif
