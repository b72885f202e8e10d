/*
 * session_int.h — what session.c and toolcheck.c share; nothing else includes it.
 *
 * session.c keeps the sessions, streams, pending requests and the transport; toolcheck.c the
 * broker's listing of a child's tools and the requests held for its verdict.
 */
#ifndef MCPVISOR_SESSION_INT_H
#define MCPVISOR_SESSION_INT_H

#include <event2/util.h>

#include "session.h"

/* session.c */
const char *session_quoted(char *buf, size_t n, const char *s);
void session_deliver_text(struct stream *st, const char *text);
int session_refuse(struct stream *st, cJSON *id, int code, const char *message, const char *type,
                   long retry_after_ms);
void session_pending_free(struct pending *p);
int session_send_to_child(struct session *s, const char *text, size_t len);
/* Sends a request's line to the session's child; p then belongs to that child's calls. */
int session_send_pending(struct pending *p, const char *text, size_t len);
void session_on_pending_timeout(evutil_socket_t fd, short what, void *arg);
void session_requests_add(struct session *s, int delta);
int session_client_request(struct session *s, cJSON *msg, struct stream *st, const char *text,
                           size_t len, const struct principal *caller, bool accepted);

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
