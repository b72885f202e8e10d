/*
 * records.c — the audit records the front's layers write (frontenv.h): assembled in one place,
 * and rate-limited where anyone can cause them. Never waits for the log: audit.c's writer thread
 * does the writing.
 */
#include "frontenv.h"

#include "audit.h"
#include "auth.h"
#include "quota.h"
#include "util.h"

cJSON *front_audit_event(struct front *f, const char *event, const struct principal *p,
                         const char *server, const char *tool)
{
    if (f->audit == NULL)
        return NULL;
    cJSON *ev = cJSON_CreateObject();
    bool ok = cJSON_AddStringToObject(ev, "event", event) != NULL;
    if (ok && p != NULL)
        ok = cJSON_AddStringToObject(ev, "tenant", p->tenant) != NULL &&
             cJSON_AddStringToObject(ev, "user", p->user) != NULL &&
             cJSON_AddStringToObject(ev, "agent", p->agent != NULL ? p->agent : "") != NULL;
    if (ok && server != NULL)
        ok = cJSON_AddStringToObject(ev, "server", server) != NULL;
    if (ok && tool != NULL)
        ok = cJSON_AddStringToObject(ev, "tool", tool) != NULL;
    if (!ok) { /* a record missing who or what would mislead: none rather than that */
        cJSON_Delete(ev);
        return NULL;
    }
    return ev;
}

uint64_t front_audit(struct front *f, cJSON *ev)
{
    if (f->audit == NULL) {
        cJSON_Delete(ev);
        return 0;
    }
    return audit_record(f->audit, ev, NULL, NULL, 0);
}

struct front_audit_burst front_quota_refused_burst = {"\x1e"
                                                      "quota_refused",
                                                      0};

uint64_t front_audit_limited(struct front *f, struct front_audit_burst *b, cJSON *ev)
{
    if (f->audit == NULL) {
        cJSON_Delete(ev);
        return 0;
    }
    if (quota_admit_key(f->quotas, b->key, FRONT_AUDIT_RATE, FRONT_AUDIT_BURST, util_mono_ms(),
                        NULL) != QUOTA_OK) {
        b->suppressed++;
        cJSON_Delete(ev);
        return 0;
    }
    if (b->suppressed > 0) {
        cJSON_AddNumberToObject(ev, "suppressed_before", (double)b->suppressed);
        b->suppressed = 0;
    }
    return front_audit(f, ev);
}
