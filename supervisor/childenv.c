/*
 * childenv.c — a child's environment: the manifest's `env`, then the calling tenant's secrets,
 * read from its secrets_dir by the privileged side (the spawner, or `mcpvisor pin`). Secrets are
 * never logged and are wiped from our heap once handed to execve.
 */
#include "childenv.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Reads one secret: <tenant secrets_dir>/<file>. Refused unless it is a regular file (no
 * symlink), owned by us (root) and readable by nobody else — a secret any local user could read
 * or replace is not a secret. Never logged. Returns a malloc'ed "NAME=value" or NULL with errno.
 */
static char *read_secret(int dirfd, const char *name, const char *file)
{
    struct stat st;
    char *kv = NULL;
    int fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd == -1)
        return NULL;
    if (fstat(fd, &st) == -1)
        goto out;
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077) != 0 ||
        st.st_size > (off_t)CHILDENV_SECRET_MAX) {
        errno = EPERM;
        goto out;
    }
    size_t nlen = strlen(name), cap = nlen + 1 + (size_t)st.st_size + 1;
    kv = malloc(cap);
    if (kv == NULL)
        goto out;
    memcpy(kv, name, nlen);
    kv[nlen] = '=';
    size_t off = nlen + 1;
    for (;;) {
        ssize_t r = read(fd, kv + off, cap - 1 - off);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            free(kv);
            kv = NULL;
            goto out;
        }
        if (r == 0 || off + (size_t)r >= cap - 1) {
            off += (size_t)r;
            break;
        }
        off += (size_t)r;
    }
    /* One trailing newline is how editors end files, not part of the secret. */
    if (off > nlen + 1 && kv[off - 1] == '\n')
        off--;
    if (off > nlen + 1 && kv[off - 1] == '\r')
        off--;
    kv[off] = '\0';
    if (memchr(kv + nlen + 1, '\0', off - nlen - 1) != NULL) {
        OPENSSL_cleanse(kv, cap);
        free(kv);
        kv = NULL;
        errno = EINVAL;
    }
out : {
    int saved = errno;
    close(fd);
    errno = saved;
}
    return kv;
}

int childenv_build(const struct config_manifest *m, const struct config_tenant *t, char **envp,
                   size_t cap, const char **step, char *why, size_t whylen)
{
    size_t n = 0;
    int dirfd = -1;
    *step = "env";
    why[0] = '\0';
    for (size_t i = 0; i < m->nenv && n + 1 < cap; i++) {
        size_t len = strlen(m->env[i].name) + strlen(m->env[i].value) + 2;
        char *kv = malloc(len);
        if (kv == NULL)
            goto fail;
        snprintf(kv, len, "%s=%s", m->env[i].name, m->env[i].value);
        envp[n++] = kv;
    }
    if (m->nsecrets > 0) {
        *step = "secrets";
        if (t == NULL || t->secrets_dir == NULL) {
            snprintf(why, whylen, "note=\"%s\"",
                     t == NULL ? "no tenant may use this server, so there is no secrets_dir"
                               : "the tenant has no secrets_dir");
            errno = ENOENT;
            goto fail;
        }
        dirfd = open(t->secrets_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd == -1) {
            snprintf(why, whylen, "dir=%s error=\"%s\"", t->secrets_dir, strerror(errno));
            goto fail;
        }
        /* A folder others may write to lets them swap a secret for a link or their own file. */
        struct stat dst;
        if (fstat(dirfd, &dst) == -1)
            goto fail;
        if (dst.st_uid != geteuid() || (dst.st_mode & 0022) != 0) {
            snprintf(why, whylen,
                     "dir=%s note=\"secrets_dir must be owned by root and writable by nobody "
                     "else\"",
                     t->secrets_dir);
            errno = EPERM;
            goto fail;
        }
        for (size_t i = 0; i < m->nsecrets && n + 1 < cap; i++) {
            char *kv = read_secret(dirfd, m->secrets[i].name, m->secrets[i].value);
            if (kv == NULL) {
                snprintf(why, whylen,
                         "variable=%s file=%s error=\"%s\" note=\"a secret must be a regular "
                         "file owned by root, mode 0600 or 0400\"",
                         m->secrets[i].name, m->secrets[i].value, strerror(errno));
                goto fail;
            }
            envp[n++] = kv;
        }
        close(dirfd);
        dirfd = -1;
    }
    envp[n] = NULL;
    return 0;
fail : {
    int saved = errno;
    if (dirfd != -1)
        close(dirfd);
    envp[n] = NULL;
    childenv_free(envp);
    errno = saved;
}
    return -1;
}

void childenv_free(char **envp)
{
    for (size_t i = 0; envp[i] != NULL; i++) {
        OPENSSL_cleanse(envp[i], strlen(envp[i])); /* secrets do not linger in our heap */
        free(envp[i]);
    }
    envp[0] = NULL;
}
