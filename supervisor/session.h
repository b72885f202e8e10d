/*
 * session.h — MCP sessions (protocol revisions 2024-11-05 … 2025-11-25), the streams that carry
 * their messages to HTTP clients, and the broker that routes between a session and its child.
 *
 * A session talks to a child through the pool (pool.h), which picks it: its own (isolation
 * "session"), one its tenant's sessions share ("tenant"), or one every tenant shares ("shared").
 *
 * Invariants: a session answers only the principal that created it; every JSON-RPC id the child
 * sees is the broker's own (client ids are restored on the way back); every HTTP exchange a
 * session holds is answered exactly once, whatever happens to the child.
 */
#ifndef MCPVISOR_SESSION_H
#define MCPVISOR_SESSION_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "config.h"
#include "idmap.h"
#include "listing.h"
#include "sse.h"

struct front;
struct upstream;
struct principal;
struct hreq;
struct event;
struct contract;
struct contract_schemas;
struct quota_slot;
struct ptally;

#define SESSION_ID_LEN            32 /* hex of 128 random bits */
#define SESSION_REPLAY_MAX_BYTES  (8u << 20)
#define SESSION_MAX_SUBSCRIPTIONS 256  /* resources/subscribe per session */
#define SESSION_RELIST_MS         5000 /* a failed listing is tried again after this */

enum stream_kind { STREAM_POST = 0, STREAM_GET, STREAM_LEGACY };

struct stream {
    struct session *s;
    uint64_t id;
    enum stream_kind kind;
    struct hreq *req; /* the HTTP exchange carrying it; NULL when detached */
    bool sse;         /* answered as text/event-stream */
    bool batch;       /* the answer is a JSON array (2025-03-26 batches) */
    bool guard;       /* the HTTP handler is still feeding messages in */
    char **out;       /* answers collected while still in JSON mode */
    size_t nout;
    unsigned waiting; /* requests on this stream not answered yet */
    uint64_t seq;     /* last event number */
    TAILQ_ENTRY(stream) link;
};

enum pending_kind {
    PENDING_CLIENT = 0, /* a client's request */
    PENDING_TOOLS_LIST, /* the broker's own tools/list, verifying the child's tools */
};

struct pending {
    struct session *s;
    struct stream *st; /* NULL for the broker's own requests */
    enum pending_kind kind;
    uint64_t bid;         /* the broker id the child sees */
    cJSON *client_id;     /* the caller's id: a raw item of its original bytes */
    char *client_key;     /* canonical text of that id, for lookups */
    char *progress_token; /* printed JSON of params._meta.progressToken, or NULL */
    struct event *timer;
    bool initialize;
    struct principal *filter_for; /* a tools/list: hide the tools this caller lacks scopes for */
    char *tool;                   /* tools/call: the tool's name */
    struct contract_schemas *schemas;   /* tools/call: what its result is checked against */
    const struct config_tool *tool_cfg; /* tools/call: the manifest's entry, or NULL */
    struct quota_slot *quota_slot;      /* a held concurrency slot, released with the pending */
    cJSON *audit;      /* an audited call (tools/call, resources/read, prompts/get): the base
                          of its records (who, what, where) */
    uint64_t call_seq; /* the audit record of the call */
    int64_t t0_ms;     /* when it was accepted, for the latency */
    size_t bytes_in;
    char *held_line; /* waits for its audit record to be written before it goes out */
    size_t held_len;
    bool forwarded;        /* its line went to the child */
    struct upstream *up;   /* the child it went to (counted there until freed), or NULL */
    bool init_local;       /* an initialize answered from the pool's (not forwarded) */
    bool token_rewritten;  /* the child saw the broker id as its progress token */
    uint64_t contract_gen; /* tools/call: the verdict it was checked against */
    TAILQ_ENTRY(pending) link;
};

/* A tools/list or tools/call waiting for the child's tools to be verified. */
struct held {
    cJSON *msg;
    char *text; /* its original bytes, or NULL */
    size_t len;
    struct stream *st; /* its stream counts it in st->waiting */
    struct principal *caller;
    TAILQ_ENTRY(held) link;
};

/* Verification of a child's tools against the manifest's pins (DESIGN.md, "Manifests"). */
enum tools_state {
    TOOLS_UNVERIFIED = 0, /* the child is not initialized yet */
    TOOLS_LISTING,        /* the broker is listing them: tool requests wait */
    TOOLS_READY,          /* s->contract holds the verified listing */
    TOOLS_FAILED,         /* the listing failed: enforce refuses calls, warn/off serve */
};

TAILQ_HEAD(stream_list, stream);
TAILQ_HEAD(pending_list, pending);
TAILQ_HEAD(held_list, held);

struct session {
    struct front *f;
    char id[SESSION_ID_LEN + 1];
    struct principal *principal; /* owned: a copy of the creator's */
    struct ptally *pt;           /* its principal's requests in flight, shared */
    const struct config_manifest *m;
    const struct config_tenant *t;
    bool legacy_sse; /* 2024-11-05 HTTP+SSE transport */
    bool ready;      /* initialize answered */
    bool closing;
    char proto[16];      /* negotiated protocol version */
    struct upstream *up; /* the child it talks to, through the pool */
    char **subs;         /* resources it subscribed to (uris) */
    size_t nsubs;
    struct stream *get_stream; /* standalone GET stream, or the legacy SSE stream */
    struct stream_list streams;
    struct pending_list pendings;
    unsigned npending;
    bool child_has_tools; /* its initialize result declared the tools capability */
    enum tools_state tools_state;
    bool relist;               /* list_changed arrived during a listing: list again after it */
    struct contract *contract; /* the last complete listing, judged */
    struct contract *listing;  /* the listing being collected */
    char tools_error[256];     /* why the last listing failed */
    int64_t tools_failed_ms;   /* when it failed (a tool request after SESSION_RELIST_MS retries) */
    struct held_list held;
    unsigned nheld;
    struct event *held_timer;     /* held requests are refused when the verdict takes too long */
    struct listing_budget budget; /* what listing its tools costs, and the back-off */
    int64_t over_budget_until_ms; /* its tools are refused until then (budget or memory spent) */
    size_t contract_nodes;        /* compiled schema nodes of contract, and of listing, as */
    size_t listing_nodes;         /* counted against the tenant's and the front's ceilings */
    uint64_t contract_gen;        /* bumped whenever the tools may have changed */
    struct event *list_timer;     /* a listing put off: list_changed comes faster than allowed */
    struct idmap srvreqs;         /* our id for a server→client request → struct srvreq */
    uint64_t next_srvreq, next_stream;
    struct sse_ring replay;
    struct event *idle_timer;
    struct event *expiry_timer; /* a JWT principal's exp: streams stop with the token */
    TAILQ_ENTRY(session) link;
};

/* What sessions need from the HTTP layer above them. The transport gives these at
 * session_module_init, so session.c never calls up into http.c: the layers stay one way. */
struct session_transport {
    /* Ties req's connection to st (NULL: to nothing); a closed connection detaches st. */
    void (*bind)(struct hreq *req, struct stream *st);
    /* Answers with a JSON body; s (may be NULL) adds its session header. */
    void (*reply_json)(struct hreq *req, int status, const char *json, size_t len,
                       const struct session *s);
    /* Answers with a JSON-RPC error body (id null). */
    void (*reply_error)(struct hreq *req, int status, int code, const char *message);
    /* Starts a text/event-stream answer (headers only). */
    void (*start_sse)(struct hreq *req, const struct session *s);
};

/* tr is borrowed for the life of the module. */
void session_module_init(struct front *f, const struct session_transport *tr);
void session_module_shutdown(struct front *f, const char *why);
size_t session_count(void);

/* Why a new session may not start now: the HTTP status (429 when the tenant is at one of its own
 * ceilings, 503 when the whole front is), Retry-After seconds and a message naming the key. */
struct session_refusal {
    int status;
    long retry_after_s;
    char message[256];
};
/* 0 when principal p of tenant t may start a session of server m now; -1 with *why filled.
 * Ceilings: limits.max_sessions, the principal's sessions (limits.max_sessions_per_principal), the
 * tenant's sessions (max_sessions, limits.max_sessions_per_tenant), its sessions of m (m's
 * pool.max_per_tenant: with isolation "session", its children of m), and children starting — from
 * the spawn request until the child answers initialize — (limits.max_spawns_in_flight,
 * limits.max_spawns_in_flight_per_tenant). */
int session_admit(const struct front *f, const struct config_manifest *m,
                  const struct config_tenant *t, const struct principal *p,
                  struct session_refusal *why);
/* Requests in flight across all sessions (draining waits for 0). */
size_t session_pending_total(void);
/* Writes an SSE comment on every open standalone stream. */
void session_keepalive(void);

/* Looks a session up by id; NULL when unknown or ended. */
struct session *session_find(const char *id);

/* Creates a session and asks the spawner for its child. NULL on allocation failure. */
struct session *session_new(struct front *f, const struct config_manifest *m,
                            const struct config_tenant *t, const struct principal *p,
                            bool legacy_sse);
/* Ends the session: answers everything it holds, kills its child. Safe to call repeatedly and
 * from any callback; the memory is released on the next loop turn. */
void session_end(struct session *s, const char *why);

/* A new stream on the session for an HTTP exchange (req borrowed until answered). */
struct stream *stream_new(struct session *s, enum stream_kind kind, struct hreq *req);
/* Starts SSE on a stream's exchange (headers, priming event). */
void stream_start_sse(struct stream *st);
/* Resumes `stream_id` after event `seq` on a GET exchange: replays what was kept; returns -1
 * when nothing can be resumed (unknown stream and nothing kept). */
int session_resume(struct session *s, struct hreq *req, uint64_t stream_id, uint64_t seq);
/* The HTTP connection of this exchange closed: detach it. */
void stream_detach(struct stream *st);

/*
 * Client → child. `caller` is this request's principal (the session's owner, possibly holding
 * a newer token with other scopes): tool authorization uses it. msg is owned by the callee in
 * every case; text/len are its original bytes
 * (NULL when unknown, e.g. an element of a batch), forwarded with only the id spliced in. For a
 * request, st receives the answer (and related messages). Returns 0, or -1 after having answered
 * the request itself with a typed error (back-pressure, limits) on st.
 */
int session_client_message(struct session *s, cJSON *msg, int kind, struct stream *st,
                           const char *text, size_t len, const struct principal *caller);
/* A request refused before it reached the session's broker (the HTTP layer's scope challenge):
 * audited like the broker's own refusals when its method is audited. msg is borrowed. */
void session_audit_refused(struct session *s, const struct principal *caller, const cJSON *msg,
                           const char *type);
/* A (JWT) principal with an expiry used the session: its streams end at that time. */
void session_refresh_expiry(struct session *s, const struct principal *p);
/* Marks activity (postpones idle expiry). */
void session_touch(struct session *s);
/* Answers on the stream at once (a refusal of one message of a body). */
void stream_answer(struct stream *st, const char *text, size_t len);
/* The HTTP handler has fed every message of its body (st->guard was set while it did): answer
 * what is complete — 202 when nothing was a request, the JSON answer(s) when all are in. */
void stream_guard_release(struct stream *st);

#endif
