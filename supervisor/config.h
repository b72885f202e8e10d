/*
 * config.h — the daemon's configuration (mcpvisor.json), the server manifests it points at and
 * the API-key file, loaded and validated into plain structs.
 *
 * Invariants: a struct config returned by config_load* is fully validated (every path absolute,
 * every limit in range, every tenant's server declared); unknown keys are errors, because a typo
 * must never silently weaken security. Errors name the file, the JSON pointer and the rule.
 *
 * The loader reads files through a `struct config_source`, so the privileged parent can read the
 * filesystem while the unprivileged front re-validates the very same bytes from a sealed bundle
 * the parent hands it (config_bundle_*), without needing read access to /etc.
 */
#ifndef MCPVISOR_CONFIG_H
#define MCPVISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_NAME_MAX       64 /* server and tenant names: [A-Za-z0-9_.-]{1,63} */
#define CONFIG_MAX_LISTENERS  16
#define CONFIG_MAX_FILE_BYTES (4u << 20) /* any single configuration file */
#define CONFIG_ERR_MAX        512
#define CONFIG_PUBLIC_URL_MAX 512 /* public_url: the base of URLs in answers */

enum config_isolation {
    CONFIG_ISOLATION_SESSION = 0, /* one child per session */
    CONFIG_ISOLATION_TENANT,      /* children shared by one tenant's sessions */
    CONFIG_ISOLATION_SHARED,      /* one pool for every tenant: the server keeps rows apart */
};
enum config_pin_mode { CONFIG_PIN_ENFORCE = 0, CONFIG_PIN_WARN, CONFIG_PIN_OFF };
enum config_audit_sync {
    CONFIG_AUDIT_SYNC_ALWAYS = 0,
    CONFIG_AUDIT_SYNC_BATCH,
    CONFIG_AUDIT_SYNC_NONE
};
enum config_seccomp_action { CONFIG_SECCOMP_KILL = 0, CONFIG_SECCOMP_ERRNO, CONFIG_SECCOMP_LOG };

struct config_listener {
    char *address;      /* as written: "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8443" */
    char *host;         /* numeric host part, without brackets */
    uint16_t port;      /* 0 = ephemeral (tests) */
    bool admin;         /* serves /metrics etc. only */
    char *tls_cert;     /* absolute path or NULL */
    char *tls_key;      /* absolute path or NULL */
    char *tls_cert_pem; /* the files' contents, read at load time (the front cannot read them) */
    char *tls_key_pem;
    bool loopback;            /* host is 127.0.0.0/8 or ::1 */
    uint32_t max_connections; /* its own ceiling; 0: limits.max_connections alone */
};

struct config_principal {
    char *tenant;
    char *user;
    char *agent;
    char **scopes;
    size_t nscopes;
};

struct config_api_key {
    uint8_t sha256[32];
    struct config_principal principal;
};

struct config_tenant {
    char *name;
    bool has_ids;      /* uid/gid given, or assigned from tenant_ids at start */
    bool ids_assigned; /* assigned (tenantids.c), not given */
    uid_t uid;
    gid_t gid;
    char **servers; /* names of manifests this tenant may use */
    size_t nservers;
    double quota_scale;              /* default 1.0 */
    uint32_t max_sessions;           /* 0: limits.max_sessions_per_tenant */
    uint32_t max_requests_in_flight; /* 0: limits.max_requests_in_flight_per_tenant */
    uint64_t max_buffered_bytes;     /* 0: limits.max_buffered_bytes_per_tenant */
    char *secrets_dir;               /* absolute path or NULL */
};

struct config_quota {
    bool has_rate;
    double rate_per_s;       /* "N/s" or "N/min" converted to per second */
    uint32_t burst;          /* 0 = same as one second of rate */
    uint32_t concurrency;    /* 0 = unlimited */
    uint32_t timeout_ms;     /* 0 = limits.request_timeout_ms */
    size_t max_args_bytes;   /* 0 = unlimited (limits.max_body_bytes still applies) */
    size_t max_result_bytes; /* 0 = unlimited (limits.max_line_bytes still applies) */
};

struct config_tool {
    char *name;
    char *version; /* NULL when not given */
    char *sha256;  /* 64 lower-case hex digits or NULL */
    char **scopes;
    size_t nscopes;
    struct config_quota quota;
    uint32_t cache_ttl_s;
};

struct config_env {
    char *name;
    char *value;
};

struct config_sandbox {
    bool network; /* false = "none" (default) */
    char **read_only;
    size_t nread_only;
    char **read_write;
    size_t nread_write;
    char **tmpfs;
    size_t ntmpfs;
    /* 0 = not set */
    uint64_t memory_mb, cpu_s, nofile, nproc, address_space_mb;
    enum config_seccomp_action seccomp_action;
    char **seccomp_deny;
    size_t nseccomp_deny;
    char **seccomp_allow;
    size_t nseccomp_allow;
};

struct config_manifest {
    char *file; /* the manifest's path, for messages */
    char *name;
    char *version;
    char **argv; /* argv[0] absolute; NULL-terminated */
    size_t argc;
    struct config_env *env; /* literal environment */
    size_t nenv;
    struct config_env *secrets; /* name = env var, value = file name in the tenant's secrets_dir */
    size_t nsecrets;
    enum config_isolation isolation;
    uint32_t pool_min_idle, pool_max_per_tenant, pool_idle_timeout_s;
    uint32_t
        pool_sessions_per_child; /* tenant/shared: sessions a child takes before another starts */
    uint64_t pool_max_calls, pool_max_age_s; /* tenant/shared: replaced after (0: never) */
    bool reads_principal_meta; /* shared: declares it keeps tenants apart by _meta principal */
    struct config_sandbox sandbox;
    enum config_pin_mode pin_mode;
    bool unlisted_tools_allow; /* "unlisted_tools": "allow" */
    struct config_tool *tools;
    size_t ntools;
};

struct config_limits {
    size_t max_body_bytes;                /* 1 MiB; request bodies, 413 beyond */
    size_t max_header_bytes;              /* 16 KiB; all request headers together */
    uint32_t max_connections;             /* 1024; concurrent HTTP connections */
    uint32_t max_connections_per_address; /* 256; from one IPv4 address or IPv6 /64 */
    uint32_t header_timeout_ms;           /* 10000; absolute deadline for a request head */
    uint32_t body_timeout_ms;             /* 30000; absolute deadline for a request body */
    uint32_t keepalive_timeout_ms;        /* 60000; idle connection between requests */
    size_t max_stream_buffer_bytes;       /* 4 MiB untaken by one client; its stream ends beyond */
    size_t max_buffered_bytes;            /* 256 MiB untaken by all clients together */
    size_t max_buffered_bytes_per_principal; /* 32 MiB by one principal's clients */
    size_t max_buffered_bytes_per_tenant;    /* 64 MiB by one tenant's */
    uint32_t max_sessions;                   /* 10000; 503 beyond */
    uint32_t max_sessions_per_tenant;    /* 1000; 429 beyond (a tenant's max_sessions overrides) */
    uint32_t max_sessions_per_principal; /* 256 of one user of a tenant; 429 beyond */
    uint32_t max_spawns_in_flight;       /* 32 children starting at once; 503 beyond */
    uint32_t max_children;               /* 10000 children in all, warm ones included */
    uint32_t max_spawns_in_flight_per_tenant;      /* 8 for one tenant; 429 beyond */
    uint32_t spawns_per_minute;                    /* 3000, bursts of a sixth of it; 503 beyond */
    uint32_t spawns_per_minute_per_tenant;         /* 600 for one tenant; 429 beyond */
    uint32_t session_idle_s;                       /* 900; idle sessions end with their child */
    size_t max_line_bytes;                         /* 4 MiB; one JSON-RPC line from a child */
    uint32_t request_timeout_ms;                   /* 60000 */
    uint32_t max_pending_per_session;              /* 64 in-flight client requests per session */
    uint32_t max_requests_in_flight_per_principal; /* 256 over all its sessions */
    uint32_t max_requests_in_flight_per_tenant;    /* 1024 */
    size_t max_child_write_bytes;                  /* 8 MiB queued towards one child's stdin */
    uint32_t sse_replay_events;  /* 256 events kept per session for Last-Event-ID */
    uint32_t stderr_lines_per_s; /* 50 stderr lines logged per child per second */
    uint32_t spawn_timeout_ms;   /* 10000; spawn + initialize */
    /* What listing a child's tools may cost the front (the ceilings of one listing, the compiled
     * schemas held per tenant and in all, and a child's budget per minute). */
    uint32_t max_listing_tools;             /* 1000 tools in one listing */
    uint32_t max_listing_pages;             /* 20 pages */
    size_t max_listing_schema_nodes;        /* 100000 compiled schema nodes in one listing */
    size_t max_schema_nodes_per_tenant;     /* 1000000 held by one tenant's children */
    size_t max_schema_nodes;                /* 4000000 held in all */
    uint32_t listing_tools_per_minute;      /* 10000 definitions listed per child */
    size_t listing_bytes_per_minute;        /* 32 MiB of tools/list answers per child */
    size_t listing_schema_nodes_per_minute; /* 400000 nodes compiled per child */
    double principal_rate_per_s;            /* 0 = off; HTTP requests per principal (tenant+user) */
    uint32_t principal_burst;               /* default: one second of the rate, at least 1 */
};

struct config {
    char *path; /* absolute path of mcpvisor.json */
    char *dir;  /* its folder */
    char *user; /* account the front runs as when started as root; default "mcpvisor" */
    bool allow_weaker_sandbox; /* start even when the kernel cannot sandbox (unprivileged, no
                                  user namespaces); default false */
    struct config_listener listeners[CONFIG_MAX_LISTENERS];
    size_t nlisteners;
    char *public_url;
    char **allowed_origins;
    size_t nallowed_origins;
    char **allowed_hosts; /* extra Host names accepted besides loopback and public_url's host */
    size_t nallowed_hosts;
    char *manifests_dir;

    /* auth */
    char *api_keys_file;
    struct config_api_key *api_keys;
    size_t napi_keys;
    bool has_anonymous;
    struct config_principal anonymous;
    bool has_jwt;
    char *jwt_issuer, *jwt_audience, *jwt_jwks_url, *jwt_jwks_file;
    char **jwt_authorization_servers;
    size_t njwt_authorization_servers;
    char *jwt_jwks_text; /* jwks_file's contents, read and checked at load time */
    char *jwt_claim_tenant, *jwt_claim_agent;
    uint32_t jwt_leeway_s;

    struct config_tenant *tenants;
    size_t ntenants;
    uint32_t tenant_ids_from, tenant_ids_to; /* ids for tenants without their own */
    char *tenant_ids_state;                  /* absolute path of the file that keeps them */

    char *audit_path;
    enum config_audit_sync audit_sync;
    uint32_t audit_batch_ms; /* 100; fdatasync interval with sync "batch" */

    struct config_limits limits;

    struct config_manifest *manifests;
    size_t nmanifests;
};

/*
 * Where configuration bytes come from. read() returns 0 and a malloc'ed NUL-terminated buffer
 * (caller frees) or -1 with errno; list() returns the sorted "*.json" names directly inside dir
 * (malloc'ed array of malloc'ed strings) or -1 with errno.
 */
struct config_source {
    int (*read)(void *ctx, const char *path, char **buf, size_t *len);
    int (*list)(void *ctx, const char *dir, char ***names, size_t *n);
    void *ctx;
};

extern const struct config_source config_source_fs;

/* Loads and validates. On failure returns NULL and writes one message to err. */
struct config *config_load(const struct config_source *src, const char *path, char *err,
                           size_t errlen);
struct config *config_load_file(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);

/* Lookups; return borrowed pointers valid for the config's lifetime, or NULL. */
const struct config_manifest *config_manifest_find(const struct config *cfg, const char *name);
const struct config_tenant *config_tenant_find(const struct config *cfg, const char *name);
bool config_tenant_allows(const struct config_tenant *t, const char *server);
const struct config_tool *config_tool_find(const struct config_manifest *m, const char *name);

/*
 * Bundle: every file config_load read for `cfg`, serialised so another process can re-run the
 * same validation without filesystem access. config_bundle_build returns a malloc'ed buffer.
 * config_bundle_source makes a source over a bundle (borrowed; free with
 * config_bundle_source_free). The source keeps its own copy of what it serves, so the bundle may
 * be freed at once; *path_out (when path_out is not NULL) is the configuration's absolute path,
 * malloc'ed (caller frees), to pass to config_load with that source.
 */
char *config_bundle_build(const struct config_source *src, const char *path, size_t *len, char *err,
                          size_t errlen);
int config_bundle_source(const char *bundle, size_t len, struct config_source *out, char **path_out,
                         char *err, size_t errlen);
void config_bundle_source_free(struct config_source *src);

#endif
