/*
 * toolcheck.c — the broker's own tools/list of a child, and the tool requests held until it is
 * judged.
 *
 * Owns: the listing of each session (its budget glue: listing.c holds the arithmetic), the
 * verdict against the manifest's pins, the held requests and the compiled-schema tallies.
 * Never talks HTTP and never touches a child's pipes: answers go out through session.c
 * (session_deliver_text, session_send_to_child), which alone holds the transport.
 *
 * The broker lists a child's tools itself when the child is initialized and whenever it says
 * notifications/tools/list_changed, and judges each definition against the manifest's pin. Tool
 * requests (tools/list, tools/call) that arrive meanwhile wait in s->held, so no call reaches a
 * tool before its definition was checked.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "contract.h"
#include "errors.h"
#include "frontenv.h"
#include "jcs.h"
#include "jsonrpc.h"
#include "log.h"
#include "session.h"
#include "session_int.h"
#include "util.h"

static size_t *tenant_nodes; /* compiled schema nodes its sessions' listings hold */
static size_t total_nodes;   /* the same, all tenants */

int toolcheck_module_init(size_t ntenants)
{
    tenant_nodes = calloc(ntenants > 0 ? ntenants : 1, sizeof(size_t));
    return tenant_nodes != NULL ? 0 : -1;
}

void toolcheck_module_shutdown(void)
{
    free(tenant_nodes);
    tenant_nodes = NULL;
    total_nodes = 0;
}

#define REPORTED_MAX 4096 /* distinct (server, tool, definition) reports remembered */

static struct idmap reported; /* FNV-1a of server, tool and pin → (void *)1 */
static bool reported_ready;

/* True the first time this definition of this tool is seen: drift is reported once per change,
 * not once per child or call. */
static bool first_report(const char *server, const char *tool, const char *pin)
{
    const char *parts[3] = {server, tool, pin};
    uint64_t h = util_fnv1a(parts, 3);
    if (!reported_ready) {
        idmap_init(&reported);
        reported_ready = true;
    }
    if (idmap_get(&reported, h) != NULL)
        return false;
    if (reported.len >= REPORTED_MAX)
        idmap_clear(&reported, NULL);
    idmap_put(&reported, h, (void *)1);
    return true;
}

static void held_free(struct session *s, struct held *h)
{
    TAILQ_REMOVE(&s->held, h, link);
    s->nheld--;
    session_requests_add(s, -1);
    cJSON_Delete(h->msg);
    free(h->text);
    principal_free(h->caller);
    free(h);
}

/* Keeps a tool request until the tools are verified. Takes msg. Returns 0 when held, -1 after
 * refusing it. st->waiting already counts it. */
int toolcheck_hold(struct session *s, cJSON *msg, struct stream *st, const char *text, size_t len,
                   const struct principal *caller)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    struct held *h = NULL;
    if (s->nheld + s->npending >= s->f->cfg->limits.max_pending_per_session) {
        session_refuse(
            st, (cJSON *)id, ERR_QUOTA_EXCEEDED,
            "too many requests in progress on this session (limits.max_pending_per_session)",
            "quota_exceeded", 1000);
        cJSON_Delete(msg);
        return -1;
    }
    h = calloc(1, sizeof(*h));
    if (h != NULL && text != NULL)
        h->text = strndup(text, len);
    if (h != NULL)
        h->caller = principal_dup(caller);
    if (h == NULL || (text != NULL && h->text == NULL) || h->caller == NULL) {
        if (h != NULL) {
            free(h->text);
            principal_free(h->caller);
            free(h);
        }
        session_refuse(st, (cJSON *)id, ERR_INTERNAL, "out of memory", NULL, -1);
        cJSON_Delete(msg);
        return -1;
    }
    h->msg = msg;
    h->len = len;
    h->st = st;
    if (s->nheld == 0) {
        /* Bounded wait: a listing that never completes (a child that keeps saying list_changed,
         * or never answers) must not keep callers forever. */
        uint32_t ms = 2 * s->f->cfg->limits.spawn_timeout_ms;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        evtimer_add(s->held_timer, &tv);
    }
    TAILQ_INSERT_TAIL(&s->held, h, link);
    s->nheld++;
    log_debug("tool_request_held session=%.8s held=%u", s->id, s->nheld);
    session_requests_add(s, +1);
    return 0;
}

/* The tools are judged (or could not be): the held requests go on their way, in order. */
static void held_release(struct session *s)
{
    struct held *h;
    evtimer_del(s->held_timer);
    /* Only those held now: a request held again while releasing waits for the next verdict. */
    for (unsigned n = s->nheld; n > 0 && (h = TAILQ_FIRST(&s->held)) != NULL && !s->closing; n--) {
        cJSON *msg = h->msg;
        struct stream *st = h->st;
        struct principal *caller = h->caller;
        char *text = h->text;
        size_t len = h->len;
        h->msg = NULL;
        h->caller = NULL;
        h->text = NULL;
        held_free(s, h);
        st->waiting--; /* session_client_request counts it again */
        broker_request(s, msg, st, text, len, caller, true);
        free(text);
        principal_free(caller);
    }
}

/* A held request answered without going anywhere is audited like other refusals. */
static void held_audit(struct session *s, const struct held *h, const char *type)
{
    session_audit_refused(s, h->caller, h->msg, type);
}

void toolcheck_held_refuse_all(struct session *s, const char *why)
{
    struct held *h;
    evtimer_del(s->held_timer);
    while ((h = TAILQ_FIRST(&s->held)) != NULL) {
        held_audit(s, h, "server_unavailable");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(h->msg, "id");
        char *e = jsonrpc_error_text(id, ERR_SERVER_UNAVAILABLE, why, "server_unavailable", -1);
        struct stream *st = h->st;
        held_free(s, h);
        session_deliver_text(st, e);
        free(e);
    }
}

/* notifications/cancelled for a held request (id as the client sent it; may be NULL). */
void toolcheck_held_cancel(struct session *s, const cJSON *rid)
{
    char *key = rid != NULL ? jsonrpc_id_text(rid) : NULL;
    struct held *h;
    TAILQ_FOREACH(h, &s->held, link)
    {
        char *hk = jsonrpc_id_text(cJSON_GetObjectItemCaseSensitive(h->msg, "id"));
        bool same = key != NULL && hk != NULL && strcmp(key, hk) == 0;
        free(hk);
        if (!same)
            continue;
        struct stream *st = h->st;
        held_audit(s, h, "cancelled");
        char *e = jsonrpc_error_text(cJSON_GetObjectItemCaseSensitive(h->msg, "id"), ERR_CANCELLED,
                                     "request cancelled by the client", NULL, -1);
        held_free(s, h);
        if (s->nheld == 0)
            evtimer_del(s->held_timer);
        session_deliver_text(st, e);
        free(e);
        break;
    }
    free(key);
}

void toolcheck_on_held_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    char why[160];
    snprintf(why, sizeof(why),
             "server unavailable: its tools were not verified within %u ms; retry later",
             2 * s->f->cfg->limits.spawn_timeout_ms);
    log_warn("tools_verification_slow session=%.8s server=%s held=%u", s->id, s->m->name, s->nheld);
    toolcheck_held_refuse_all(s, why);
}

/* Asks the child for one page of its tools. */
static int send_list_page(struct session *s, const char *cursor)
{
    struct pending *p = calloc(1, sizeof(*p));
    cJSON *msg = cJSON_CreateObject();
    char *out = NULL;
    if (p == NULL || msg == NULL)
        goto fail;
    p->s = s;
    p->kind = PENDING_TOOLS_LIST;
    p->bid = ++s->f->next_bid;
    p->client_id = cJSON_CreateRaw("null");
    p->client_key = strdup("");
    p->timer = evtimer_new(s->f->base, session_on_pending_timeout, p);
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(msg, "params", params);
    if (p->client_id == NULL || p->client_key == NULL || p->timer == NULL || params == NULL ||
        cJSON_AddStringToObject(msg, "jsonrpc", "2.0") == NULL ||
        cJSON_AddNumberToObject(msg, "id", (double)p->bid) == NULL ||
        cJSON_AddStringToObject(msg, "method", "tools/list") == NULL ||
        (cursor != NULL && cJSON_AddStringToObject(params, "cursor", cursor) == NULL) ||
        (out = jsonrpc_print(msg)) == NULL || idmap_put(&s->f->pending_ids, p->bid, p) == -1)
        goto fail;
    cJSON_Delete(msg);
    TAILQ_INSERT_TAIL(&s->pendings, p, link);
    if (session_send_pending(p, out, strlen(out)) == -1) {
        free(out);
        session_pending_free(p);
        return -1;
    }
    free(out);
    uint32_t ms = s->f->cfg->limits.spawn_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    return 0;
fail:
    free(out);
    cJSON_Delete(msg);
    if (p != NULL)
        session_pending_destroy(p);
    return -1;
}

static void tools_list_now(struct session *s);

void toolcheck_on_list_timer(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    if (!s->closing)
        tools_list_now(s);
}

void toolcheck_start(struct session *s)
{
    s->contract_gen++; /* calls checked before this and not yet forwarded are checked again */
    if (s->tools_state == TOOLS_LISTING) {
        s->relist = true;
        return;
    }
    int64_t now = util_mono_ms();
    if (now < s->over_budget_until_ms)
        return; /* listed again on the first tool request after the budget's window */
    int64_t ms = listing_wait_ms(&s->budget, now);
    if (ms > 0) {
        /* A child announcing changes faster than this would keep the event loop listing for
         * it alone: tool requests wait (bounded by the hold timer), the listing starts later,
         * and later again after each change (listing.h). */
        s->tools_state = TOOLS_LISTING;
        s->relist = false;
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        evtimer_add(s->list_timer, &tv);
        return;
    }
    tools_list_now(s);
}

/* Counts a listing's compiled schema nodes (*slot: s->contract_nodes or s->listing_nodes) in
 * its tenant's and the front's tallies. */
void toolcheck_nodes_set(struct session *s, size_t *slot, size_t n)
{
    if (tenant_nodes != NULL) {
        size_t ti = (size_t)(s->t - s->f->cfg->tenants);
        tenant_nodes[ti] = tenant_nodes[ti] - *slot + n;
        total_nodes = total_nodes - *slot + n;
    }
    *slot = n;
}

static void listing_drop(struct session *s)
{
    contract_free(s->listing);
    s->listing = NULL;
    toolcheck_nodes_set(s, &s->listing_nodes, 0);
}

/* The child's listings cost more than its budget (or its schemas more memory than its tenant
 * or the front may hold): its tools are refused until retry_ms from now, then listed again on
 * demand. Nobody else's listings or calls are affected. */
static void tools_over_budget(struct session *s, const char *why, int64_t retry_ms)
{
    char qw[384], msg[512];
    listing_drop(s);
    s->over_budget_until_ms = util_mono_ms() + retry_ms;
    snprintf(s->tools_error, sizeof(s->tools_error), "%s", why);
    s->tools_state = TOOLS_FAILED;
    s->tools_failed_ms = util_mono_ms();
    s->relist = false;
    evtimer_del(s->list_timer);
    log_warn("listing_over_budget session=%.8s server=%s tenant=%s retry_after_ms=%lld reason=%s",
             s->id, s->m->name, s->t->name, (long long)retry_ms,
             log_quote_str(qw, sizeof(qw), why));
    snprintf(msg, sizeof(msg), "server unavailable: %s; its tools are refused for %lld s", why,
             (long long)((retry_ms + 999) / 1000));
    toolcheck_held_refuse_all(s, msg);
}

/* Counts one tools/list answer against the child's budget; -1 after tools_over_budget. */
int toolcheck_spend(struct session *s, size_t bytes, size_t tools, size_t nodes)
{
    char why[256];
    int64_t retry = 0;
    if (listing_charge(&s->budget, &s->f->cfg->limits, util_mono_ms(), bytes, tools, nodes, why,
                       sizeof(why), &retry) == 0)
        return 0;
    tools_over_budget(s, why, retry);
    return -1;
}

/* The listing being collected holds more compiled schemas than its tenant or the front may:
 * -1 after tools_over_budget. */
static int listing_memory_check(struct session *s)
{
    const struct config_limits *lim = &s->f->cfg->limits;
    toolcheck_nodes_set(s, &s->listing_nodes, s->listing->nodes);
    size_t ti = (size_t)(s->t - s->f->cfg->tenants);
    char why[256];
    if (tenant_nodes[ti] > lim->max_schema_nodes_per_tenant)
        snprintf(why, sizeof(why),
                 "the compiled tool schemas of tenant %s would exceed "
                 "limits.max_schema_nodes_per_tenant (%zu nodes)",
                 s->t->name, lim->max_schema_nodes_per_tenant);
    else if (total_nodes > lim->max_schema_nodes)
        snprintf(why, sizeof(why),
                 "the compiled tool schemas of all servers would exceed limits.max_schema_nodes "
                 "(%zu nodes)",
                 lim->max_schema_nodes);
    else
        return 0;
    tools_over_budget(s, why, LISTING_WINDOW_MS);
    return -1;
}

static void tools_list_now(struct session *s)
{
    const struct config_limits *lim = &s->f->cfg->limits;
    s->tools_state = TOOLS_LISTING;
    s->relist = false;
    listing_started(&s->budget, util_mono_ms());
    listing_drop(s);
    s->listing = contract_new(s->m);
    if (s->listing != NULL) {
        s->listing->max_tools = lim->max_listing_tools;
        s->listing->max_pages = lim->max_listing_pages;
        s->listing->max_nodes = lim->max_listing_schema_nodes;
    }
    if (s->listing == NULL) {
        toolcheck_fail(s, "out of memory");
        return;
    }
    if (!s->child_has_tools) {
        /* No tools capability: nothing to list, nothing to call. */
        struct contract *c = s->listing;
        s->listing = NULL;
        contract_free(s->contract);
        s->contract = c;
        toolcheck_nodes_set(s, &s->contract_nodes, 0);
        s->tools_state = TOOLS_READY;
        held_release(s);
        return;
    }
    if (send_list_page(s, NULL) == -1)
        toolcheck_fail(s, "cannot send tools/list to the server");
}

void toolcheck_fail(struct session *s, const char *why)
{
    listing_drop(s);
    snprintf(s->tools_error, sizeof(s->tools_error), "%s", why);
    s->tools_state = TOOLS_FAILED;
    s->tools_failed_ms = util_mono_ms();
    char qw[384]; /* holds the server's words */
    log_warn("tools_unverified session=%.8s server=%s pin_mode=%s reason=%s", s->id, s->m->name,
             s->m->pin_mode == CONFIG_PIN_ENFORCE ? "enforce"
             : s->m->pin_mode == CONFIG_PIN_WARN  ? "warn"
                                                  : "off",
             log_quote_str(qw, sizeof(qw), why));
    if (s->relist) {
        toolcheck_start(s);
        return;
    }
    held_release(s);
}

/* Logs what the listing found that an operator must hear about, once per definition. */
static void tools_report(struct session *s, const struct contract *c)
{
    const struct config_manifest *m = s->m;
    bool enforce = m->pin_mode == CONFIG_PIN_ENFORCE;
    for (size_t i = 0; i < c->n; i++) {
        const struct contract_tool *t = &c->tools[i];
        const char *bad = contract_schema_error(t->schemas);
        bool hidden = contract_hides(m, t->verdict) || (bad != NULL && enforce);
        if ((t->verdict != CONTRACT_DRIFT || m->pin_mode == CONFIG_PIN_OFF) &&
            (t->verdict != CONTRACT_UNLISTED || m->unlisted_tools_allow) && bad == NULL)
            continue;
        if (!first_report(m->name, t->name, t->pin))
            continue;
        bool drift = t->verdict == CONTRACT_DRIFT && m->pin_mode != CONFIG_PIN_OFF;
        cJSON *ev = drift ? front_audit_event(s->f, "schema_drift", NULL, m->name, t->name) : NULL;
        if (ev != NULL) {
            if (t->cfg->version != NULL)
                cJSON_AddStringToObject(ev, "tool_version", t->cfg->version);
            cJSON_AddStringToObject(ev, "pinned_sha256", t->cfg->sha256);
            cJSON_AddStringToObject(ev, "observed_sha256", t->pin);
            cJSON_AddStringToObject(ev, "pin_mode", enforce ? "enforce" : "warn");
            cJSON_AddStringToObject(ev, "action", hidden ? "hidden" : "served");
            front_audit(s->f, ev);
        }
        if (drift)
            log_warn("tool_drift server=%s tool=%s tool_version=%s pinned=%s observed=%s "
                     "pin_mode=%s action=%s",
                     m->name, t->name, t->cfg->version != NULL ? t->cfg->version : "-",
                     t->cfg->sha256, t->pin, enforce ? "enforce" : "warn",
                     hidden ? "hidden" : "served");
        char qn[160], qb[640]; /* names and schema errors come from the server: quoted */
        if (t->verdict == CONTRACT_UNLISTED && !m->unlisted_tools_allow)
            log_info("tool_unlisted server=%s tool=%s observed=%s unlisted_tools=deny "
                     "action=hidden",
                     m->name, log_quote_str(qn, sizeof(qn), t->name), t->pin);
        if (bad != NULL)
            log_warn("tool_schema_unsupported server=%s tool=%s action=%s reason=%s", m->name,
                     log_quote_str(qn, sizeof(qn), t->name),
                     enforce ? "hidden" : "served unvalidated", log_quote_str(qb, sizeof(qb), bad));
    }
}

/* One page of the broker's own tools/list came back. Takes msg. */
void toolcheck_list_answer(struct session *s, struct pending *p, cJSON *msg, size_t len)
{
    char err[256];
    session_pending_free(p);
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
    if (s->listing == NULL) { /* superseded */
        cJSON_Delete(msg);
        return;
    }
    if (result == NULL) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "message");
        snprintf(err, sizeof(err), "tools/list answered an error: %.160s",
                 cJSON_IsString(text) ? text->valuestring : "(no message)");
        cJSON_Delete(msg);
        toolcheck_fail(s, err);
        return;
    }
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(result, "nextCursor");
    size_t tools_before = s->listing->n, compiled_before = s->listing->nodes_compiled;
    int added =
        cJSON_IsObject(result)
            ? contract_add_page(s->listing, cJSON_GetObjectItemCaseSensitive(result, "tools"), err,
                                sizeof(err))
            : -1;
    /* What the page cost is charged whether or not it was acceptable. */
    if (toolcheck_spend(s, len, s->listing->n - tools_before,
                        s->listing->nodes_compiled - compiled_before) == -1 ||
        listing_memory_check(s) == -1) {
        cJSON_Delete(msg);
        return;
    }
    if (added == -1) {
        if (!cJSON_IsObject(result))
            snprintf(err, sizeof(err), "tools/list: the result is not an object");
        cJSON_Delete(msg);
        toolcheck_fail(s, err);
        return;
    }
    if (cJSON_IsString(next)) {
        int rc = send_list_page(s, next->valuestring);
        cJSON_Delete(msg);
        if (rc == -1)
            toolcheck_fail(s, "cannot send tools/list to the server");
        return;
    }
    cJSON_Delete(msg);
    if (contract_finish(s->listing, err, sizeof(err)) == -1) {
        toolcheck_fail(s, err);
        return;
    }
    contract_free(s->contract);
    s->contract = s->listing;
    s->listing = NULL;
    toolcheck_nodes_set(s, &s->contract_nodes, s->listing_nodes);
    toolcheck_nodes_set(s, &s->listing_nodes, 0);
    s->tools_state = TOOLS_READY;
    tools_report(s, s->contract);
    log_debug("tools_verified session=%.8s server=%s tools=%zu schema_nodes=%zu", s->id, s->m->name,
              s->contract->n, s->contract_nodes);
    /* Held requests are judged against this complete listing even when the child already
     * announced another change: a child that keeps announcing must not starve them. */
    bool again = s->relist;
    held_release(s);
    if (again && !s->closing)
        toolcheck_start(s);
}

/* A client's tools/list answer: hides what the contract hides. Returns how many it hid. A
 * definition unlike the one verified means the server changed without saying list_changed:
 * judged on the spot, and the tools are listed again. */
size_t toolcheck_filter_listing(struct session *s, cJSON *result)
{
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
    size_t hidden = 0;
    bool changed = false;
    if (!cJSON_IsArray(tools))
        return 0;
    cJSON *it = tools->child;
    size_t seen = 0;
    while (it != NULL) {
        cJSON *next = it->next;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        char pin[JCS_PIN_HEX];
        bool hide;
        if (++seen > s->f->cfg->limits.max_listing_tools || !cJSON_IsString(name) ||
            jcs_tool_pin(it, pin) == -1) {
            hide = true;
        } else {
            const struct contract_tool *ct = contract_find(s->contract, name->valuestring);
            const struct config_tool *cfg = config_tool_find(s->m, name->valuestring);
            const char *bad;
            enum contract_verdict v;
            if (ct != NULL && strcmp(ct->pin, pin) == 0) {
                v = ct->verdict;
                bad = contract_schema_error(ct->schemas);
            } else {
                struct contract_schemas *sc = contract_schemas_get(it, pin);
                bad = sc == NULL ? "out of memory" : contract_schema_error(sc);
                v = contract_judge(s->m, cfg, pin, bad == NULL);
                bad = bad != NULL ? "bad" : NULL;
                contract_schemas_unref(sc);
                changed = s->tools_state == TOOLS_READY;
            }
            hide = contract_hides(s->m, v) || (bad != NULL && s->m->pin_mode == CONFIG_PIN_ENFORCE);
        }
        if (hide) {
            cJSON_Delete(cJSON_DetachItemViaPointer(tools, it));
            hidden++;
        }
        it = next;
    }
    if (changed) {
        log_warn("tools_changed_unannounced session=%.8s server=%s note=\"listing again\"", s->id,
                 s->m->name);
        toolcheck_start(s);
    }
    return hidden;
}
