/*
 * tenantids.c — ids for tenants without their own (see tenantids.h).
 *
 * Owns: the state file (tenant name → id). Never runs in the front, never gives an id that the
 * passwd or group database names, that another tenant has or had, or that the front runs as.
 * The file is replaced whole (written beside it, synced, renamed), so a crash leaves the old or
 * the new one, never a mix.
 */
#include "tenantids.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"

/* Reads the state file into a JSON object of name → id. A missing file is an empty state. */
static cJSON *state_read(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1 && errno == ENOENT)
        return cJSON_CreateObject();
    struct stat st;
    if (fd == -1 || fstat(fd, &st) == -1) {
        snprintf(err, errlen, "tenant_ids.state_file %s: %s", path, strerror(errno));
        if (fd != -1)
            close(fd);
        return NULL;
    }
    /* Only root may decide who runs as which uid. */
    if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
        st.st_size > (off_t)TENANTIDS_STATE_MAX) {
        snprintf(err, errlen,
                 "tenant_ids.state_file %s: expected a regular file owned by root, not writable "
                 "by others, at most %u bytes",
                 path, TENANTIDS_STATE_MAX);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf != NULL ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (n != (ssize_t)st.st_size) {
        snprintf(err, errlen, "tenant_ids.state_file %s: cannot read it", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    cJSON *tenants = cJSON_DetachItemFromObjectCaseSensitive(root, "tenants");
    cJSON_Delete(root);
    if (!cJSON_IsObject(tenants)) {
        cJSON_Delete(tenants);
        snprintf(err, errlen,
                 "tenant_ids.state_file %s: not a state file mcpvisor wrote (expected "
                 "{\"tenants\": {name: id, ...}}); move it away to start afresh",
                 path);
        return NULL;
    }
    return tenants;
}

static int state_write(const char *path, const cJSON *tenants, char *err, size_t errlen)
{
    char dirbuf[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(dirbuf, sizeof(dirbuf), "%s", path);
    const char *dir = dirname(dirbuf);
    if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
        snprintf(err, errlen, "tenant_ids.state_file: cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(tenants, 1);
    char *text = NULL;
    if (root != NULL && copy != NULL && cJSON_AddItemToObject(root, "tenants", copy))
        copy = NULL, text = cJSON_Print(root);
    cJSON_Delete(copy);
    cJSON_Delete(root);
    if (text == NULL) {
        snprintf(err, errlen, "tenant_ids.state_file: out of memory");
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    bool ok = fd != -1 && write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
              fsync(fd) == 0;
    int saved = errno;
    free(text);
    if (fd != -1)
        close(fd);
    if (!ok || rename(tmp, path) == -1) {
        if (ok)
            saved = errno;
        unlink(tmp);
        snprintf(err, errlen, "tenant_ids.state_file %s: cannot write it: %s", path,
                 strerror(saved));
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd != -1) {
        fsync(dfd); /* the rename itself survives a crash */
        close(dfd);
    }
    return 0;
}

/* Whether id may not be given: the front's, a tenant's own, recorded for a tenant, or known to
 * the system as a user or a group. */
static bool taken(const struct config *cfg, const cJSON *state, uint64_t id, uid_t front_uid,
                  gid_t front_gid, const char *except)
{
    if (id == (uint64_t)front_uid || id == (uint64_t)front_gid)
        return true;
    for (size_t i = 0; i < cfg->ntenants; i++) {
        const struct config_tenant *t = &cfg->tenants[i];
        if (t->has_ids && (except == NULL || strcmp(t->name, except) != 0) &&
            ((uint64_t)t->uid == id || (uint64_t)t->gid == id))
            return true;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, state)
    {
        if ((except == NULL || strcmp(it->string, except) != 0) && cJSON_IsNumber(it) &&
            it->valuedouble == (double)id)
            return true;
    }
    return getpwuid((uid_t)id) != NULL || getgrgid((gid_t)id) != NULL;
}

int tenantids_assign(struct config *cfg, uid_t front_uid, gid_t front_gid, char *err, size_t errlen)
{
    bool needed = false;
    for (size_t i = 0; i < cfg->ntenants; i++)
        needed = needed || !cfg->tenants[i].has_ids;
    if (!needed)
        return 0; /* every tenant has its own: no state to keep */
    cJSON *state = state_read(cfg->tenant_ids_state, err, errlen);
    if (state == NULL)
        return -1;
    bool changed = false;
    int rc = 0;
    for (size_t i = 0; i < cfg->ntenants && rc == 0; i++) {
        struct config_tenant *t = &cfg->tenants[i];
        if (t->has_ids)
            continue;
        cJSON *rec = cJSON_GetObjectItemCaseSensitive(state, t->name);
        uint64_t id = 0;
        if (cJSON_IsNumber(rec) && rec->valuedouble >= cfg->tenant_ids_from &&
            rec->valuedouble <= cfg->tenant_ids_to &&
            !taken(cfg, state, (uint64_t)rec->valuedouble, front_uid, front_gid, t->name)) {
            id = (uint64_t)rec->valuedouble;
        } else {
            if (rec != NULL)
                log_warn("tenant_ids_changed tenant=%s note=\"its recorded id is outside "
                         "tenant_ids or now taken: it gets a new one\"",
                         t->name);
            cJSON_DeleteItemFromObjectCaseSensitive(state, t->name);
            for (uint64_t u = cfg->tenant_ids_from; u <= cfg->tenant_ids_to && id == 0; u++)
                if (!taken(cfg, state, u, front_uid, front_gid, NULL))
                    id = u;
            if (id == 0) {
                snprintf(err, errlen,
                         "tenant %s needs a uid of its own and tenant_ids (%" PRIu32 "-%" PRIu32
                         ") has none left that no tenant, account or group uses; widen it or "
                         "give the tenant uid and gid",
                         t->name, cfg->tenant_ids_from, cfg->tenant_ids_to);
                rc = -1;
                break;
            }
            if (!cJSON_AddNumberToObject(state, t->name, (double)id)) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            changed = true;
            log_info("tenant_ids_assigned tenant=%s uid=%" PRIu64 " gid=%" PRIu64, t->name, id, id);
        }
        t->uid = (uid_t)id;
        t->gid = (gid_t)id;
        t->has_ids = true;
        t->ids_assigned = true;
    }
    if (rc == 0 && changed)
        rc = state_write(cfg->tenant_ids_state, state, err, errlen);
    cJSON_Delete(state);
    return rc;
}
