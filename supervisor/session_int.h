/*
 * session_int.h — what session.c and toolcheck.c share; nothing else includes it.
 *
 * session.c keeps the sessions, streams, pending requests and the transport; broker.c the gates
 * of one request and its forwarding; toolcheck.c the broker's listing of a child's tools and the
 * requests held for its verdict.
 */
#ifndef MCPVISOR_SESSION_INT_H
#define MCPVISOR_SESSION_INT_H

#include <event2/util.h>

#include "session.h"

struct jsonschema_error;
struct config_tool;

/* A request refused while its child's circuit is open (pool_unavailable_ms). */
#define SESSION_CIRCUIT_OPEN                                                                       \
    "server unavailable: it keeps failing to start or crashing, so its restarts are paused; "      \
    "retry after data.retry_after_ms"

/* session.c */
void session_deliver_text(struct stream *st, const char *text);
int session_refuse(struct stream *st, cJSON *id, int code, const char *message, const char *type,
                   long retry_after_ms);
void session_pending_free(struct pending *p);
/* Frees p and what it holds, without unlinking it: one never linked (set-up failed) takes this. */
void session_pending_destroy(struct pending *p);
int session_send_to_child(struct session *s, const char *text, size_t len);
/* Sends a request's line to the session's child; p then belongs to that child's calls. */
int session_send_pending(struct pending *p, const char *text, size_t len);
void session_on_pending_timeout(evutil_socket_t fd, short what, void *arg);
void session_requests_add(struct session *s, int delta);
cJSON *session_audit_base(struct session *s, const char *event, const struct principal *caller,
                          const char *method, const char *target, const cJSON *id);
void session_audit_refusal(struct session *s, cJSON *base, const char *type);
void session_pending_fail(struct pending *p, int code, const char *message, const char *type,
                          long retry_after_ms);
cJSON *session_id_raw(const cJSON *msg, const char *text, size_t len);
char *session_with_id(cJSON *msg, const char *text, size_t len, const char *id, size_t *outlen);
struct pending *session_pending_by_key(struct session *s, const cJSON *id);
int session_inflight_admit(const struct session *s, char *why, size_t whylen);
bool session_subscribed(const struct session *s, const char *uri);
bool session_others_subscribed(const struct session *s, const char *uri);
void session_init_answer(struct session *s, struct pending *p);

/* broker.c */
/* A client request through the gates to the child. accepted: taken in before a drain began.
 * Takes msg; returns 0, or -1 after refusing it on st. */
int broker_request(struct session *s, cJSON *msg, struct stream *st, const char *text, size_t len,
                   const struct principal *caller, bool accepted);
/* A typed error about one tool as text: data.tool, then the members of `extra` (taken, may be
 * NULL). NULL on allocation failure. */
char *broker_tool_error_text(const cJSON *id, int code, const char *message, const char *type,
                             const char *tool, cJSON *extra);
/* data.errors of a validation failure: instance pointer, keyword, message for each. */
void broker_add_errors(cJSON *data, const struct jsonschema_error *errs, size_t n);
/* params._meta["io.mcpvisor/principal"] set to caller (a "shared" child's requests), or only
 * stripped (caller NULL: a client's notification). -1 when params or _meta is not an object. */
int broker_principal_meta(cJSON *msg, const struct principal *caller);
/* The manifest's version of a tool, or NULL. */
const char *broker_tool_version(const struct config_tool *t);

/* toolcheck.c */
int toolcheck_module_init(size_t ntenants);
void toolcheck_module_shutdown(void);
void toolcheck_start(struct session *s);
void toolcheck_fail(struct session *s, const char *why);
void toolcheck_list_answer(struct session *s, struct pending *p, cJSON *msg, size_t len);
int toolcheck_spend(struct session *s, size_t bytes, size_t tools, size_t nodes);
size_t toolcheck_filter_listing(struct session *s, cJSON *result);
void toolcheck_nodes_set(struct session *s, size_t *slot, size_t n);
int toolcheck_hold(struct session *s, cJSON *msg, struct stream *st, const char *text, size_t len,
                   const struct principal *caller);
void toolcheck_held_cancel(struct session *s, const cJSON *rid);
void toolcheck_held_refuse_all(struct session *s, const char *why);
void toolcheck_on_held_timeout(evutil_socket_t fd, short what, void *arg);
void toolcheck_on_list_timer(evutil_socket_t fd, short what, void *arg);

#endif
