/*
 * broker.c — one client request on its way to a child: the gates it passes, in a fixed order,
 * then its forwarding (ids, progress tokens and, for a "shared" child, the caller's identity
 * rewritten; the audit record written first for an audited call).
 *
 * Owns: the order of the gates and what each refuses. Never answers the HTTP exchange itself
 * (session.c's streams do), never touches a child (the pool does): a request leaves here as a
 * pending request of its session, or as a typed refusal on its stream.
 *
 * Gates, each `int gate(struct call *)`: 0 passes, -1 refused (answered), 1 taken (held for the
 * tools' verdict, or answered here). The tool is looked up once, in call_begin.
 *   shape        an audited method names its target
 *   audit        the base of its records (no memory: refused, never unaudited)
 *   target       what it names is at most BROKER_MAX_TARGET_BYTES (refused and recorded)
 *   admission    draining, the child's circuit, duplicate id, the session's and the principal's
 *                and tenant's requests in flight
 *   tools_ready  the child's listing budget; held until its tools are verified
 *   scope        principal and scope
 *   version      the caller's pinned tool version
 *   arguments    the contract: listed, not drifted, arguments valid
 *   quota        argument size, rates, concurrency
 *   subscription resource subscriptions counted per session
 */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "contract.h"
#include "errors.h"
#include "frontenv.h"
#include "jcs.h"
#include "jsonrpc.h"
#include "listing.h"
#include "log.h"
#include "pool.h"
#include "quota.h"
#include "session.h"
#include "session_int.h"
#include "util.h"

#define VERSION_META "mcpvisor/version"
/* The longest tool name, prompt name or resource URI a call may name. Every call's record keeps
 * it whole (or, in a record over AUDIT_MAX_LINE, its first bytes and its SHA-256); MCP's tool
 * names are at most 128 characters, and 8 KiB is more than any URI scheme needs. */
#define BROKER_MAX_TARGET_BYTES 8192

/* One request on its way through the gates. */
struct call {
    struct session *s;
    cJSON *msg; /* owned until the call ends */
    struct stream *st;
    const char *text; /* its original bytes, or NULL */
    size_t len;
    const struct principal *caller;
    bool accepted; /* taken in before a drain began (held for a listing) */
    const char *method;
    const cJSON *id;
    const cJSON *params;
    const char *tool;             /* tools/call: params.name, or NULL */
    const struct config_tool *tc; /* its manifest entry, looked up once, or NULL */
    cJSON *base;                  /* an audited call: the base of its records */
    const char *refused;          /* the typed error an audited call was refused with */
    char *cargs;                  /* canonical arguments (audited or a manifest tool) */
    size_t cargs_len;
    struct contract_schemas *schemas; /* what its result is checked against */
    struct quota_slot *slot;          /* a held concurrency slot */
};

char *broker_tool_error_text(const cJSON *id, int code, const char *message, const char *type,
                             const char *tool, cJSON *extra)
{
    cJSON *e = jsonrpc_error_new(id, code, message, type, -1);
    cJSON *data =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "error"), "data");
    if (tool != NULL)
        cJSON_AddStringToObject(data, "tool", tool);
    while (extra != NULL && extra->child != NULL && data != NULL) {
        cJSON *item = cJSON_DetachItemViaPointer(extra, extra->child);
        cJSON_AddItemToObject(data, item->string, item);
    }
    cJSON_Delete(extra);
    char *et = e != NULL ? jsonrpc_print(e) : NULL;
    cJSON_Delete(e);
    return et;
}

/* A typed refusal about one tool, answered on st: see tool_error_text. */
static int refuse_tool_data(struct stream *st, const cJSON *id, int code, const char *message,
                            const char *type, const char *tool, cJSON *extra)
{
    char *et = broker_tool_error_text(id, code, message, type, tool, extra);
    session_deliver_text(st, et);
    free(et);
    return -1;
}

/* A typed refusal about one tool: data.tool, and one more data member when `value` is given. */
static int refuse_tool(struct stream *st, const cJSON *id, int code, const char *message,
                       const char *type, const char *tool, const char *key, const char *value)
{
    cJSON *extra = NULL;
    if (value != NULL) {
        extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, key, value);
    }
    return refuse_tool_data(st, id, code, message, type, tool, extra);
}

static bool is_tool_method(const char *method)
{
    return method != NULL &&
           (strcmp(method, "tools/call") == 0 || strcmp(method, "tools/list") == 0);
}

/* data.errors of a validation failure: instance pointer, keyword, message for each. */
void broker_add_errors(cJSON *data, const struct jsonschema_error *errs, size_t n)
{
    cJSON *list = cJSON_AddArrayToObject(data, "errors");
    for (size_t i = 0; i < n && i < CONTRACT_MAX_ERRORS && list != NULL; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "instance", errs[i].instance);
        cJSON_AddStringToObject(e, "keyword", errs[i].keyword);
        cJSON_AddStringToObject(e, "message", errs[i].message);
        cJSON_AddItemToArray(list, e);
    }
}

const char *broker_tool_version(const struct config_tool *t)
{
    return t != NULL && t->version != NULL ? t->version : NULL;
}

/* The methods whose every call is audited (who called what, and how it ended). */
static bool is_audited(const char *method)
{
    return method != NULL &&
           (strcmp(method, "tools/call") == 0 || strcmp(method, "resources/read") == 0 ||
            strcmp(method, "prompts/get") == 0);
}

/* What an audited call names: the tool, the prompt or the resource. Borrowed. */
static const char *call_target(const cJSON *msg, const char *method)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        params, strcmp(method, "resources/read") == 0 ? "uri" : "name");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void session_audit_refused(struct session *s, const struct principal *caller, const cJSON *msg,
                           const char *type)
{
    const char *method = jsonrpc_method(msg);
    if (!is_audited(method) || call_target(msg, method) == NULL)
        return;
    session_audit_refusal(s,
                          session_audit_base(s, "call", caller, method, call_target(msg, method),
                                             cJSON_GetObjectItemCaseSensitive(msg, "id")),
                          type);
}

/* Sends a pending request's line to the child and starts nothing else; on failure the request
 * is answered with the reason. Takes line. */
static void pending_send(struct pending *p, char *line, size_t len)
{
    struct session *s = p->s;
    int rc = session_send_pending(p, line, len);
    free(line);
    if (rc == 0) {
        p->forwarded = true;
        return;
    }
    long retry = s->up != NULL ? pool_unavailable_ms(s->up) : -1;
    if (retry >= 0)
        session_pending_fail(p, ERR_SERVER_UNAVAILABLE, SESSION_CIRCUIT_OPEN, "server_unavailable",
                             retry);
    else if (s->up == NULL || s->closing)
        session_pending_fail(p, ERR_SERVER_UNAVAILABLE, "the server is not running",
                             "server_unavailable", -1);
    else
        session_pending_fail(p, ERR_QUOTA_EXCEEDED,
                             "the server is not reading its input fast enough "
                             "(limits.max_child_write_bytes)",
                             "quota_exceeded", 1000);
}

/* The call's audit record is written (or could not be): forward it, or refuse it. */
static void on_call_audited(void *ctx, uint64_t bid, bool ok)
{
    struct front *f = ctx;
    struct pending *p = idmap_get(&f->pending_ids, bid);
    if (p == NULL || p->held_line == NULL)
        return; /* answered meanwhile (cancelled, timed out, session ended) */
    char *line = p->held_line;
    size_t len = p->held_len;
    p->held_line = NULL;
    if (!ok) {
        free(line);
        p->call_seq = 0; /* that record does not exist */
        session_pending_fail(
            p, ERR_AUDIT_UNAVAILABLE,
            "audit unavailable: the audit log cannot be written, so the call was not "
            "forwarded; retry later",
            "audit_unavailable", 1000);
        return;
    }
    if (p->tool != NULL && p->contract_gen != p->s->contract_gen) {
        /* The server announced new tools while the record was being written: the verdict
         * this call passed may no longer hold. */
        free(line);
        session_pending_fail(
            p, ERR_SERVER_UNAVAILABLE,
            "server unavailable: its tools changed while the call was being recorded, "
            "so it was not forwarded; retry",
            "server_unavailable", LISTING_MIN_GAP_MS);
        return;
    }
    pending_send(p, line, len);
}

#define PRINCIPAL_META "io.mcpvisor/principal"

/* A "shared" child is told who calls: params._meta["io.mcpvisor/principal"] becomes the verified
 * principal, whatever the client put there (it cannot speak for anyone else). The credential is
 * never part of it. -1 when params is not an object (nowhere to put it) or out of memory. */
int broker_principal_meta(cJSON *msg, const struct principal *caller)
{
    cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    if (params == NULL)
        params = cJSON_AddObjectToObject(msg, "params");
    if (!cJSON_IsObject(params))
        return -1;
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    if (meta == NULL && caller == NULL)
        return 0;
    if (meta == NULL)
        meta = cJSON_AddObjectToObject(params, "_meta");
    if (!cJSON_IsObject(meta))
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(meta, PRINCIPAL_META);
    if (caller == NULL)
        return 0; /* a notification: stripped only */
    cJSON *who = cJSON_AddObjectToObject(meta, PRINCIPAL_META);
    cJSON *scopes = cJSON_CreateArray();
    if (who == NULL || scopes == NULL || !cJSON_AddItemToObject(who, "scopes", scopes)) {
        cJSON_Delete(scopes);
        return -1;
    }
    for (size_t i = 0; i < caller->nscopes; i++)
        cJSON_AddItemToArray(scopes, cJSON_CreateString(caller->scopes[i]));
    return cJSON_AddStringToObject(who, "tenant", caller->tenant) != NULL &&
                   cJSON_AddStringToObject(who, "user", caller->user) != NULL &&
                   cJSON_AddStringToObject(who, "agent",
                                           caller->agent != NULL ? caller->agent : "") != NULL
               ? 0
               : -1;
}

/* On a child several sessions share, the child sees the broker id as the progress token (two
 * sessions may both use "1"); the caller's token is restored on the way back. */
static int progress_token_rewrite(cJSON *msg, uint64_t bid)
{
    cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    cJSON *num = cJSON_CreateNumber((double)bid);
    if (num == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(meta, "progressToken", num)) {
        cJSON_Delete(num);
        return -1;
    }
    return 0;
}

/* resources/subscribe and unsubscribe are counted per session, so a shared child's updates go
 * to the sessions that asked, and one session's unsubscribe does not end another's. Returns 1
 * when the request was answered here (an unsubscribe others still need), 0 to forward it, -1
 * after refusing it. */
static int subscription(struct session *s, const char *method, const cJSON *msg, struct stream *st)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *uri =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(msg, "params"), "uri");
    bool sub = strcmp(method, "resources/subscribe") == 0;
    if (!sub && strcmp(method, "resources/unsubscribe") != 0)
        return 0;
    if (!cJSON_IsString(uri))
        return 0; /* the server answers what is malformed */
    if (sub) {
        if (session_subscribed(s, uri->valuestring))
            return 0;
        char **n = s->nsubs < SESSION_MAX_SUBSCRIPTIONS
                       ? realloc(s->subs, (s->nsubs + 1) * sizeof(*n))
                       : NULL;
        char *copy = n != NULL ? strdup(uri->valuestring) : NULL;
        if (n != NULL)
            s->subs = n;
        if (copy == NULL)
            return session_refuse(st, (cJSON *)id, ERR_QUOTA_EXCEEDED,
                                  "too many resource subscriptions on this session (at most 256)",
                                  "quota_exceeded", -1);
        s->subs[s->nsubs++] = copy;
        return 0;
    }
    for (size_t i = 0; i < s->nsubs; i++) {
        if (strcmp(s->subs[i], uri->valuestring) == 0) {
            free(s->subs[i]);
            s->subs[i] = s->subs[--s->nsubs];
            break;
        }
    }
    if (!pool_multi(s->up) || !session_others_subscribed(s, uri->valuestring))
        return 0;
    char *idt = jsonrpc_id_text(id);
    char *text = NULL;
    if (idt != NULL && asprintf(&text, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}", idt) == -1)
        text = NULL;
    session_deliver_text(st, text);
    free(idt);
    free(text);
    return 1;
}

/* ---- gates -------------------------------------------------------------------------------- */

static int gate_shape(struct call *c)
{
    if (!is_audited(c->method) || call_target(c->msg, c->method) != NULL)
        return 0;
    /* What it names is what is authorized, checked, counted and audited: it must be there. */
    return session_refuse(c->st, (cJSON *)c->id, ERR_INVALID_PARAMS,
                          strcmp(c->method, "resources/read") == 0
                              ? "Invalid params: resources/read needs params.uri, a string"
                              : "Invalid params: this method needs params.name, a string",
                          NULL, -1);
}

static int gate_audit(struct call *c)
{
    if (!is_audited(c->method))
        return 0;
    c->base = session_audit_base(c->s, "call", c->caller, c->method, call_target(c->msg, c->method),
                                 c->id);
    if (c->base == NULL && c->s->f->audit != NULL)
        return session_refuse(c->st, (cJSON *)c->id, ERR_AUDIT_UNAVAILABLE,
                              "audit unavailable: out of memory for the record; the call was not "
                              "forwarded",
                              "audit_unavailable", 1000);
    return 0;
}

/* After gate_audit, so the refusal is recorded (with the target's hash) like any other. */
static int gate_target(struct call *c)
{
    if (!is_audited(c->method))
        return 0;
    size_t len = strlen(call_target(c->msg, c->method)); /* there: gate_shape */
    if (len <= BROKER_MAX_TARGET_BYTES)
        return 0;
    bool uri = strcmp(c->method, "resources/read") == 0;
    char why[256];
    snprintf(why, sizeof(why),
             "Invalid params: params.%s is %zu bytes; mcpvisor accepts at most %u (what a call "
             "names is recorded whole in the audit log)",
             uri ? "uri" : "name", len, (unsigned)BROKER_MAX_TARGET_BYTES);
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddNumberToObject(extra, "max_bytes", BROKER_MAX_TARGET_BYTES);
    c->refused = "invalid_params";
    return refuse_tool_data(c->st, c->id, ERR_INVALID_PARAMS, why, "invalid_params", NULL, extra);
}

static int gate_admission(struct call *c)
{
    struct session *s = c->s;
    const struct config_limits *lim = &s->f->cfg->limits;
    if (s->f->draining && !c->accepted) {
        c->refused = "server_unavailable";
        return session_refuse(c->st, (cJSON *)c->id, ERR_SERVER_UNAVAILABLE,
                              "draining: the server is stopping; retry on a new session",
                              "server_unavailable", 1000);
    }
    long down = pool_unavailable_ms(s->up);
    if (down >= 0) {
        c->refused = "server_unavailable";
        return session_refuse(c->st, (cJSON *)c->id, ERR_SERVER_UNAVAILABLE, SESSION_CIRCUIT_OPEN,
                              "server_unavailable", down);
    }
    /* Before anything is counted against a quota: these refusals take nothing. */
    if (session_pending_by_key(s, c->id) != NULL)
        return session_refuse(c->st, (cJSON *)c->id, ERR_INVALID_REQUEST,
                              "a request with this id is already in progress", NULL, -1);
    if (s->npending + s->nheld >= lim->max_pending_per_session) {
        c->refused = "quota_exceeded";
        return session_refuse(c->st, (cJSON *)c->id, ERR_QUOTA_EXCEEDED,
                              "too many requests in progress on this session "
                              "(limits.max_pending_per_session)",
                              "quota_exceeded", 1000);
    }
    char busy[256];
    if (session_inflight_admit(s, busy, sizeof(busy)) == -1) {
        c->refused = "quota_exceeded";
        return session_refuse(c->st, (cJSON *)c->id, ERR_QUOTA_EXCEEDED, busy, "quota_exceeded",
                              1000);
    }
    return 0;
}

static int gate_tools_ready(struct call *c)
{
    struct session *s = c->s;
    if (!is_tool_method(c->method))
        return 0;
    if (util_mono_ms() < s->over_budget_until_ms) {
        char why[512];
        snprintf(why, sizeof(why), "server unavailable: %s; retry later", s->tools_error);
        c->refused = "server_unavailable";
        return session_refuse(c->st, (cJSON *)c->id, ERR_SERVER_UNAVAILABLE, why,
                              "server_unavailable",
                              (long)(s->over_budget_until_ms - util_mono_ms()));
    }
    if (s->tools_state == TOOLS_FAILED && s->ready &&
        util_mono_ms() - s->tools_failed_ms >= SESSION_RELIST_MS)
        toolcheck_start(s); /* the last listing failed a while ago: try again */
    if (s->tools_state == TOOLS_UNVERIFIED && s->ready)
        toolcheck_start(s); /* not judged yet: list now */
    if (s->tools_state != TOOLS_UNVERIFIED && s->tools_state != TOOLS_LISTING)
        return 0;
    /* Waits for the verdict; toolcheck gives it back to broker_request. */
    cJSON_Delete(c->base);
    c->base = NULL;
    int rc = toolcheck_hold(s, c->msg, c->st, c->text, c->len, c->caller);
    c->msg = NULL;
    return rc == -1 ? -1 : 1;
}

static int gate_scope(struct call *c)
{
    if (c->tc == NULL || auth_tool_allowed(c->tc, c->caller))
        return 0;
    char scopes[512], why[768];
    auth_scope_string(c->s->m, c->tc, scopes, sizeof(scopes));
    snprintf(why, sizeof(why), "forbidden: tool %s needs scope %s", c->tool, scopes);
    char qt[LOG_QUOTED_MAX], qu[LOG_QUOTED_MAX];
    log_info("tool_forbidden session=%.8s server=%s tool=%s user=%s needs=\"%s\"", c->s->id,
             c->s->m->name, log_quote_str(qt, sizeof(qt), c->tool),
             log_quote_str(qu, sizeof(qu), c->caller->user), scopes);
    c->refused = "forbidden";
    return refuse_tool(c->st, c->id, ERR_FORBIDDEN, why, "forbidden", c->tool, "required_scope",
                       scopes);
}

/* A caller that pinned a tool version (params._meta["mcpvisor/version"]) must get that one. */
static int gate_version(struct call *c)
{
    if (c->tool == NULL)
        return 0;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(c->params, "_meta");
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(meta, VERSION_META);
    if (want == NULL)
        return 0;
    const char *current = c->tc != NULL ? c->tc->version : NULL;
    const char *wanted = cJSON_IsString(want) ? want->valuestring : "(not a string)";
    if (current != NULL && cJSON_IsString(want) && strcmp(current, want->valuestring) == 0)
        return 0;
    char why[512];
    snprintf(why, sizeof(why), "version mismatch: tool %s is at version %s, not %s", c->tool,
             current != NULL ? current : "(none: the manifest gives it no version)", wanted);
    c->refused = "version_mismatch";
    return refuse_tool(c->st, c->id, ERR_VERSION_MISMATCH, why, "version_mismatch", c->tool,
                       "tool_version", current);
}

/*
 * The contract's word on a tools/call: refused when the tool is hidden, drifted under enforce
 * or its arguments fail its inputSchema; otherwise c->schemas is what its result will be checked
 * against (a reference, or NULL).
 */
static int gate_arguments(struct call *c)
{
    if (c->tool == NULL)
        return 0;
    struct session *s = c->s;
    const struct config_manifest *m = s->m;
    const char *name = c->tool;
    const cJSON *id = c->id;
    struct stream *st = c->st;
    const struct config_tool *cfg = c->tc;
    const struct contract_tool *ct = contract_find(s->contract, name);
    bool enforce = m->pin_mode == CONFIG_PIN_ENFORCE;
    char why[512];

    if (s->tools_state == TOOLS_FAILED && enforce) {
        snprintf(why, sizeof(why),
                 "server unavailable: its tools could not be verified against their pins (%s)",
                 s->tools_error);
        c->refused = "server_unavailable";
        return refuse_tool(st, id, ERR_SERVER_UNAVAILABLE, why, "server_unavailable", name, NULL,
                           NULL);
    }
    if (ct == NULL && enforce) {
        /* Not in the verified listing: nothing about it was checked, so it is not called. */
        snprintf(why, sizeof(why),
                 "unknown tool: server %s does not list %s, so its definition cannot be checked "
                 "(pin_mode: enforce)",
                 m->name, name);
        c->refused = "unknown_tool";
        return refuse_tool(st, id, ERR_UNKNOWN_TOOL, why, "unknown_tool", name, NULL, NULL);
    }
    if ((ct == NULL && cfg == NULL && !m->unlisted_tools_allow) ||
        (ct != NULL && ct->verdict == CONTRACT_UNLISTED && !m->unlisted_tools_allow)) {
        snprintf(why, sizeof(why),
                 "unknown tool: %s is not in the manifest of server %s (unlisted_tools: deny)",
                 name, m->name);
        c->refused = "unknown_tool";
        return refuse_tool(st, id, ERR_UNKNOWN_TOOL, why, "unknown_tool", name, NULL, NULL);
    }
    if (ct == NULL)
        return 0; /* warn, off: the server does not list it; its own answer will say so */
    if (ct->verdict == CONTRACT_DRIFT && enforce) {
        cJSON *extra = cJSON_CreateObject();
        if (broker_tool_version(cfg) != NULL)
            cJSON_AddStringToObject(extra, "tool_version", cfg->version);
        cJSON_AddStringToObject(extra, "pinned_sha256", cfg->sha256);
        cJSON_AddStringToObject(extra, "observed_sha256", ct->pin);
        snprintf(why, sizeof(why),
                 "schema drift: the server now describes tool %s differently from its pin; "
                 "review it and update the manifest (mcpvisor pin %s)",
                 name, m->name);
        c->refused = "schema_drift";
        return refuse_tool_data(st, id, ERR_SCHEMA_DRIFT, why, "schema_drift", name, extra);
    }
    const char *bad = contract_schema_error(ct->schemas);
    if (bad != NULL && enforce) {
        snprintf(why, sizeof(why),
                 "unknown tool: %s is hidden because mcpvisor cannot validate its schemas (%.300s)",
                 name, bad);
        c->refused = "unknown_tool";
        return refuse_tool(st, id, ERR_UNKNOWN_TOOL, why, "unknown_tool", name, NULL, NULL);
    }
    if (bad != NULL)
        return 0; /* warn and off serve it unvalidated; the listing logged why */

    const cJSON *args = cJSON_GetObjectItemCaseSensitive(c->params, "arguments");
    struct jsonschema_error errs[CONTRACT_MAX_ERRORS];
    size_t n = contract_check_arguments(ct->schemas, args, errs, CONTRACT_MAX_ERRORS);
    if (n > 0) {
        cJSON *extra = cJSON_CreateObject();
        broker_add_errors(extra, errs, n);
        if (broker_tool_version(cfg) != NULL)
            cJSON_AddStringToObject(extra, "tool_version", cfg->version);
        snprintf(why, sizeof(why), "invalid arguments for tool %s: %s at \"%s\"%s", name,
                 errs[0].message, errs[0].instance, n > 1 ? " (and more: see data.errors)" : "");
        char qn[LOG_QUOTED_MAX];
        log_info("invalid_arguments session=%.8s server=%s tool=%s errors=%zu", s->id, m->name,
                 log_quote_str(qn, sizeof(qn), name), n);
        c->refused = "invalid_arguments";
        return refuse_tool_data(st, id, ERR_INVALID_ARGUMENTS, why, "invalid_arguments", name,
                                extra);
    }
    c->schemas = contract_schemas_ref(ct->schemas);
    return 0;
}

/* Quotas of a tools/call of a manifest tool: argument size, rates, concurrency (c->slot is set
 * when a concurrency slot is held). The canonical arguments are computed here: their size is
 * what quota.max_args_bytes bounds, their hash what the audit log records. */
static int gate_quota(struct call *c)
{
    if (c->base == NULL && c->tc == NULL)
        return 0;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(c->params, "arguments");
    cJSON *empty = args == NULL ? cJSON_CreateObject() : NULL;
    c->cargs = jcs_canonicalize(args != NULL ? args : empty, &c->cargs_len);
    if (c->cargs == NULL)
        c->cargs = jsonrpc_print(args != NULL ? args : empty);
    cJSON_Delete(empty);
    if (c->cargs == NULL)
        return session_refuse(c->st, (cJSON *)c->id, ERR_INTERNAL, "out of memory", NULL, -1);
    c->cargs_len = strlen(c->cargs);
    if (c->tc == NULL)
        return 0;
    struct session *s = c->s;
    const struct config_tool *tc = c->tc;
    const struct config_quota *q = &tc->quota;
    const cJSON *id = c->id;
    char why[384];
    if (q->max_args_bytes > 0 && c->cargs_len > q->max_args_bytes) {
        snprintf(why, sizeof(why),
                 "quota exceeded: the arguments are %zu bytes; tool %s accepts at most %zu "
                 "(quota.max_args_bytes)",
                 c->cargs_len, tc->name, q->max_args_bytes);
        c->refused = "quota_exceeded";
        return refuse_tool(c->st, id, ERR_QUOTA_EXCEEDED, why, "quota_exceeded", tc->name, NULL,
                           NULL);
    }
    long retry = -1;
    enum quota_verdict v =
        quota_admit_call(s->f->quotas, c->caller->tenant, c->caller->user, s->m->name, tc->name, q,
                         s->t->quota_scale, util_mono_ms(), &retry, &c->slot);
    if (v == QUOTA_OK)
        return 0;
    snprintf(why, sizeof(why), "quota exceeded: %s for tool %s%s", quota_verdict_text(v), tc->name,
             retry >= 0 ? "; retry after data.retry_after_ms" : "");
    char qu[LOG_QUOTED_MAX];
    log_info("quota_refused session=%.8s server=%s tool=%s tenant=%s user=%s reason=\"%s\" "
             "retry_after_ms=%ld",
             s->id, s->m->name, tc->name, s->t->name,
             log_quote_str(qu, sizeof(qu), c->caller->user), quota_verdict_text(v), retry);
    cJSON *ev = front_audit_event(s->f, "quota_refused", c->caller, s->m->name, tc->name);
    if (ev != NULL) {
        cJSON_AddStringToObject(ev, "reason", quota_verdict_text(v));
        if (retry >= 0)
            cJSON_AddNumberToObject(ev, "retry_after_ms", (double)retry);
        front_audit_limited(s->f, &front_quota_refused_burst, ev);
    }
    c->refused = "quota_exceeded";
    cJSON *extra = cJSON_CreateObject();
    if (tc->version != NULL)
        cJSON_AddStringToObject(extra, "tool_version", tc->version);
    if (retry >= 0)
        cJSON_AddNumberToObject(extra, "retry_after_ms", (double)retry);
    return refuse_tool_data(c->st, id, ERR_QUOTA_EXCEEDED, why, "quota_exceeded", tc->name, extra);
}

static int gate_subscription(struct call *c)
{
    return subscription(c->s, c->method, c->msg, c->st);
}

typedef int (*gate_fn)(struct call *c);
static const gate_fn gates[] = {
    gate_shape, gate_audit,   gate_target,    gate_admission, gate_tools_ready,
    gate_scope, gate_version, gate_arguments, gate_quota,     gate_subscription,
};

/* ---- forwarding --------------------------------------------------------------------------- */

/* Makes the call a pending request of its session and sends it (its record first when audited).
 * Every outcome answers it: returns 0. */
static int forward(struct call *c)
{
    struct session *s = c->s;
    const struct config_limits *lim = &s->f->cfg->limits;
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return session_refuse(c->st, (cJSON *)c->id, ERR_INTERNAL, "out of memory", NULL, -1);
    p->s = s;
    p->st = c->st;
    p->client_id = session_id_raw(c->msg, c->text, c->len);
    p->client_key = jsonrpc_id_text(c->id);
    p->bid = ++s->f->next_bid;
    p->t0_ms = util_mono_ms();
    p->initialize = strcmp(c->method, "initialize") == 0;
    if (strcmp(c->method, "tools/list") == 0)
        p->filter_for = principal_dup(c->caller);
    if (c->tool != NULL) {
        p->tool = strdup(c->tool);
        p->contract_gen = s->contract_gen;
        p->tool_cfg = c->tc;
        p->schemas = c->schemas;
        c->schemas = NULL;
        p->quota_slot = c->slot;
        c->slot = NULL;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(c->params, "_meta");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (tok != NULL && (cJSON_IsString(tok) || cJSON_IsNumber(tok)))
        p->progress_token = jsonrpc_print(tok);
    p->timer = evtimer_new(s->f->base, session_on_pending_timeout, p);
    if (p->client_id == NULL || p->client_key == NULL || p->timer == NULL ||
        (c->tool != NULL && p->tool == NULL) || idmap_put(&s->f->pending_ids, p->bid, p) == -1) {
        session_pending_destroy(p);
        return session_refuse(c->st, (cJSON *)c->id, ERR_INTERNAL, "out of memory", NULL, -1);
    }
    TAILQ_INSERT_TAIL(&s->pendings, p, link);
    s->npending++;
    session_requests_add(s, +1);

    uint32_t ms = p->initialize ? lim->spawn_timeout_ms : lim->request_timeout_ms;
    if (c->tc != NULL && c->tc->quota.timeout_ms > 0)
        ms = c->tc->quota.timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);

    const cJSON *asked = cJSON_GetObjectItemCaseSensitive(c->params, "protocolVersion");
    if (p->initialize && cJSON_IsString(asked) &&
        strlen(asked->valuestring) < sizeof(p->init_version))
        snprintf(p->init_version, sizeof(p->init_version), "%s", asked->valuestring);
    if (p->initialize && !pool_passthrough(s->up)) {
        /* The pool initialized the child: answered from its result, now or once it is ready. */
        p->init_local = true;
        if (pool_init_result(s->up) != NULL)
            session_init_answer(s, p);
        return 0;
    }
    bool reprint = false; /* msg changed: printed rather than spliced */
    if (c->tc != NULL && c->tc->quota.max_args_bytes > 0 && c->cargs != NULL) {
        /* The bound is measured on the canonical arguments, so those are what the child gets:
         * padding the caller's bytes cannot carry more past quota.max_args_bytes. */
        cJSON *params = cJSON_GetObjectItemCaseSensitive(c->msg, "params");
        cJSON *raw = cJSON_GetObjectItemCaseSensitive(params, "arguments") != NULL
                         ? cJSON_CreateRaw(c->cargs)
                         : NULL;
        if (raw != NULL && !cJSON_ReplaceItemInObjectCaseSensitive(params, "arguments", raw))
            cJSON_Delete(raw);
        else if (raw != NULL)
            reprint = true;
    }
    if (pool_multi(s->up) && p->progress_token != NULL) {
        if (progress_token_rewrite(c->msg, p->bid) == -1) {
            session_pending_fail(p, ERR_INTERNAL, "out of memory", NULL, -1);
            return 0;
        }
        p->token_rewritten = true;
        reprint = true;
    }
    if (s->m->isolation == CONFIG_ISOLATION_SHARED) {
        if (broker_principal_meta(c->msg, c->caller) == -1) {
            session_pending_fail(p, ERR_INVALID_PARAMS,
                                 "Invalid params: params and params._meta must be objects (this "
                                 "server is told who calls in params._meta)",
                                 NULL, -1);
            return 0;
        }
        reprint = true;
    }
    char bid[24];
    size_t outlen = 0;
    snprintf(bid, sizeof(bid), "%" PRIu64, p->bid);
    char *out = session_with_id(c->msg, reprint ? NULL : c->text, c->len, bid, &outlen);
    if (out == NULL) {
        session_pending_fail(p, ERR_INTERNAL, "out of memory", NULL, -1);
        return 0;
    }
    if (c->base == NULL) {
        pending_send(p, out, outlen);
        return 0;
    }
    /* Audited: the call goes out once its record is written (synced, with sync "always"). */
    cJSON *ev = cJSON_Duplicate(c->base, 1);
    p->audit = c->base;
    c->base = NULL;
    p->bytes_in = c->text != NULL ? c->len : outlen;
    p->held_line = out;
    p->held_len = outlen;
    if (ev != NULL) {
        char h[UTIL_SHA256_HEX + 1];
        if (c->cargs != NULL) {
            util_sha256_hex(c->cargs, c->cargs_len, h);
            cJSON_AddStringToObject(ev, "args_sha256", h);
        }
        cJSON_AddNumberToObject(ev, "bytes_in", (double)p->bytes_in);
        if (pool_pid(s->up) > 0)
            cJSON_AddNumberToObject(ev, "child_pid", pool_pid(s->up));
    }
    p->call_seq = ev != NULL ? audit_record(s->f->audit, ev, on_call_audited, s->f, p->bid) : 0;
    if (p->call_seq == 0)
        session_pending_fail(p, ERR_AUDIT_UNAVAILABLE,
                             "audit unavailable: the audit log cannot take the record, so the "
                             "call was not forwarded; retry later",
                             "audit_unavailable", 1000);
    return 0;
}

int broker_request(struct session *s, cJSON *msg, struct stream *st, const char *text, size_t len,
                   const struct principal *caller, bool accepted)
{
    struct call c = {
        .s = s,
        .msg = msg,
        .st = st,
        .text = text,
        .len = len,
        .caller = caller,
        .accepted = accepted,
        .method = jsonrpc_method(msg) != NULL ? jsonrpc_method(msg) : "",
        .id = cJSON_GetObjectItemCaseSensitive(msg, "id"),
        .params = cJSON_GetObjectItemCaseSensitive(msg, "params"),
    };
    st->waiting++;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(c.params, "name");
    if (strcmp(c.method, "tools/call") == 0 && cJSON_IsString(name)) {
        c.tool = name->valuestring;
        c.tc = config_tool_find(s->m, c.tool); /* the one lookup */
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof(gates) / sizeof(gates[0]) && rc == 0; i++)
        rc = gates[i](&c);
    if (rc == 0)
        rc = forward(&c);
    else if (rc == 1)
        rc = 0; /* held, or answered here */
    if (rc == -1 && c.refused != NULL && c.base != NULL) {
        session_audit_refusal(s, c.base, c.refused);
        c.base = NULL;
    }
    cJSON_Delete(c.base);
    free(c.cargs);
    quota_release(s->f->quotas, c.slot);
    contract_schemas_unref(c.schemas);
    cJSON_Delete(c.msg);
    return rc;
}
