/*
 * pin.c — `mcpvisor pin SERVER [--write]`: what a server's tools look like now, against the pins
 * its manifest holds.
 *
 * The server is started exactly as the daemon's spawner starts it (spawn_start with the plan
 * plan_build makes: the manifest's compiled sandbox profile, its cgroup leaf, the set-up deadline
 * limits.spawn_timeout_ms, the manifest's environment and the secrets of the identity it runs
 * as). As root that identity is the first tenant allowed to use the server (its uid and gid, or
 * nobody when it has none; nobody when no tenant may use it); unprivileged, our own ids in a user
 * namespace, as the daemon does.
 *
 * Then one stdio MCP conversation: initialize, notifications/initialized, tools/list following
 * nextCursor. Every exchange has a deadline (PIN_EXCHANGE_MS) and every read goes through poll,
 * so a server that hangs, floods or stops reading cannot block us; lines are bounded by
 * limits.max_line_bytes, the listing by PIN_MAX_PAGES and PIN_MAX_TOOLS. Requests the server
 * sends us are answered (ping) or refused (-32601); notifications and lines that are not
 * JSON-RPC are ignored, as the daemon ignores them. Finally stdin is closed and the server gets
 * PIN_REAP_MS to exit before its whole process group is killed.
 *
 * --write re-reads the manifest (refusing if it changed meanwhile), sets each listed tool's
 * sha256, adds the tools it lacks ({"version": "1", "sha256": ...}), keeps every other key, and
 * prints it with 2-space indentation. The new text is validated with the whole configuration
 * (config_load over a source that serves it in place of the file) before it replaces the file
 * by rename(2) from a temporary file in the same folder, with the same mode and owner, synced.
 * Versions are never changed: the operator is told which ones a changed definition may call for.
 */
#include "pin.h"

#include "childenv.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "contract.h"
#include "jcs.h"
#include "jsonrpc.h"
#include "plan.h"
#include "policy.h"
#include "spawn.h"
#include "util.h"
#include "version.h"

#define PIN_EXCHANGE_MS 10000 /* one request and its answer */
#define PIN_REAP_MS     2000  /* after stdin is closed, before SIGKILL */
#define PIN_MAX_PAGES   100
#define PIN_MAX_TOOLS   10000
#define PIN_MAX_ENV     256
#define PIN_SECRET_MAX  (64u << 10)
#define PIN_STDERR_TAIL 400 /* the server's last stderr bytes, shown with an error */
#define PIN_READ_CHUNK  65536
#define PIN_PROTOCOL    "2025-11-25"
#define PIN_NAME_WIDTH  40 /* widest name column */

/* ---- the child ---------------------------------------------------------------------------- */

struct pin_child {
    pid_t pid;
    int in, out, err; /* -1 once closed */
    char *rbuf;       /* stdout bytes not yet taken as lines */
    size_t rlen, rcap;
    char *wbuf; /* bytes queued towards stdin */
    size_t wlen, woff;
    char tail[PIN_STDERR_TAIL + 1];
    size_t ntail;
    size_t max_line;
    bool out_eof;
    long next_id;
    int status; /* wait status once reaped, else -1 */
    char cgroup[512];
};

static void close_fd(int *fd)
{
    if (*fd != -1) {
        close(*fd);
        *fd = -1;
    }
}

static int queue(struct pin_child *c, const char *text)
{
    size_t n = strlen(text);
    if (c->woff > 0) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    char *grown = realloc(c->wbuf, c->wlen + n + 1);
    if (grown == NULL)
        return -1;
    c->wbuf = grown;
    memcpy(c->wbuf + c->wlen, text, n);
    c->wbuf[c->wlen + n] = '\n';
    c->wlen += n + 1;
    return 0;
}

static void keep_tail(struct pin_child *c, const char *b, size_t n)
{
    if (n >= PIN_STDERR_TAIL) {
        memcpy(c->tail, b + n - PIN_STDERR_TAIL, PIN_STDERR_TAIL);
        c->ntail = PIN_STDERR_TAIL;
    } else {
        size_t keep = c->ntail + n > PIN_STDERR_TAIL ? PIN_STDERR_TAIL - n : c->ntail;
        memmove(c->tail, c->tail + c->ntail - keep, keep);
        memcpy(c->tail + keep, b, n);
        c->ntail = keep + n;
    }
    c->tail[c->ntail] = '\0';
}

/* One poll round until `deadline`: writes what is queued, reads stdout into rbuf (or discards it
 * when `discard`), keeps stderr's tail. Returns 0, or -1 with a message. */
static int pump(struct pin_child *c, int64_t deadline, bool discard, char *err, size_t errlen)
{
    struct pollfd p[3];
    int np = 0, iin = -1, iout = -1, ierr = -1;
    if (c->in != -1 && c->woff < c->wlen) {
        iin = np;
        p[np++] = (struct pollfd){.fd = c->in, .events = POLLOUT};
    }
    if (c->out != -1 && !c->out_eof) {
        iout = np;
        p[np++] = (struct pollfd){.fd = c->out, .events = POLLIN};
    }
    if (c->err != -1) {
        ierr = np;
        p[np++] = (struct pollfd){.fd = c->err, .events = POLLIN};
    }
    int64_t left = deadline - util_mono_ms();
    if (left <= 0) {
        snprintf(err, errlen, "no answer within %d s", PIN_EXCHANGE_MS / 1000);
        return -1;
    }
    int r = poll(p, (nfds_t)np, left > INT_MAX ? INT_MAX : (int)left);
    if (r == -1)
        return errno == EINTR ? 0 : (snprintf(err, errlen, "poll: %s", strerror(errno)), -1);
    if (iin != -1 && (p[iin].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t w = write(c->in, c->wbuf + c->woff, c->wlen - c->woff);
        if (w == -1 && errno == EPIPE) {
            /* The server is gone: what it left on stdout (or its EOF) tells the story. */
            c->woff = c->wlen;
            w = 0;
        } else if (w == -1 && errno != EAGAIN && errno != EINTR) {
            snprintf(err, errlen, "writing to the server's stdin: %s", strerror(errno));
            return -1;
        }
        if (w > 0)
            c->woff += (size_t)w;
    }
    if (iout != -1 && (p[iout].revents & (POLLIN | POLLERR | POLLHUP))) {
        char sink[4096];
        if (!discard && c->rcap - c->rlen < PIN_READ_CHUNK) {
            char *grown = realloc(c->rbuf, c->rlen + PIN_READ_CHUNK);
            if (grown == NULL) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            c->rbuf = grown;
            c->rcap = c->rlen + PIN_READ_CHUNK;
        }
        ssize_t n = discard ? read(c->out, sink, sizeof(sink))
                            : read(c->out, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
            c->out_eof = true;
        else if (n > 0 && !discard)
            c->rlen += (size_t)n;
    }
    if (ierr != -1 && (p[ierr].revents & (POLLIN | POLLERR | POLLHUP))) {
        char b[4096];
        ssize_t n = read(c->err, b, sizeof(b));
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
            close_fd(&c->err);
        else if (n > 0)
            keep_tail(c, b, (size_t)n);
    }
    return 0;
}

/* Takes the next non-empty line out of rbuf: 1 with a malloc'ed *line, 0 when none is complete,
 * -1 when a line is longer than max_line, -2 when out of memory. */
static int next_line(struct pin_child *c, char **line, size_t *len)
{
    for (;;) {
        char *nl = c->rlen > 0 ? memchr(c->rbuf, '\n', c->rlen) : NULL;
        if (nl == NULL)
            return c->rlen > c->max_line ? -1 : 0;
        size_t n = (size_t)(nl - c->rbuf), used = n + 1;
        if (n > c->max_line)
            return -1;
        if (n > 0 && c->rbuf[n - 1] == '\r')
            n--;
        char *l = NULL;
        if (n > 0) {
            l = malloc(n + 1);
            if (l == NULL)
                return -2;
            memcpy(l, c->rbuf, n);
            l[n] = '\0';
        }
        memmove(c->rbuf, c->rbuf + used, c->rlen - used);
        c->rlen -= used;
        if (l != NULL) {
            *line = l;
            *len = n;
            return 1;
        }
    }
}

/* A request the server sent us: ping is answered, roots/list with no roots, anything else
 * refused. */
static int answer_request(struct pin_child *c, const cJSON *msg)
{
    const char *method = jsonrpc_method(msg);
    cJSON *reply = cJSON_CreateObject();
    if (reply == NULL)
        return -1;
    cJSON_AddStringToObject(reply, "jsonrpc", "2.0");
    cJSON_AddItemToObject(reply, "id",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(msg, "id"), 1));
    if (method != NULL && strcmp(method, "ping") == 0) {
        cJSON_AddObjectToObject(reply, "result");
    } else if (method != NULL && strcmp(method, "roots/list") == 0) {
        cJSON_AddArrayToObject(cJSON_AddObjectToObject(reply, "result"), "roots");
    } else {
        cJSON *e = cJSON_AddObjectToObject(reply, "error");
        cJSON_AddNumberToObject(e, "code", -32601);
        cJSON_AddStringToObject(e, "message", "method not found (mcpvisor pin only lists tools)");
    }
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    int rc = text != NULL ? queue(c, text) : -1;
    cJSON_free(text);
    return rc;
}

/* Sends a request and waits for its answer: 0 with *answer (the whole message; the caller
 * deletes it), or -1 with a message. */
static int exchange(struct pin_child *c, const char *method, cJSON *params, cJSON **answer,
                    char *err, size_t errlen)
{
    long id = ++c->next_id;
    cJSON *req = cJSON_CreateObject();
    if (req == NULL) {
        cJSON_Delete(params);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cJSON_AddStringToObject(req, "jsonrpc", "2.0");
    cJSON_AddNumberToObject(req, "id", (double)id);
    cJSON_AddStringToObject(req, "method", method);
    cJSON_AddItemToObject(req, "params", params);
    char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (text == NULL || queue(c, text) == -1) {
        cJSON_free(text);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cJSON_free(text);

    int64_t deadline = util_mono_ms() + PIN_EXCHANGE_MS;
    for (;;) {
        char *line;
        size_t len;
        int r;
        while ((r = next_line(c, &line, &len)) == 1) {
            const char *problem; /* read as the daemon reads it */
            size_t at;
            cJSON *msg = jsonrpc_parse(line, len, &problem, &at);
            enum jsonrpc_kind kind =
                msg != NULL && problem == NULL ? jsonrpc_classify(msg) : JSONRPC_INVALID;
            free(line);
            if (kind == JSONRPC_INVALID) {
                fprintf(stderr, "mcpvisor pin: ignoring a line that is not JSON-RPC (%zu bytes)\n",
                        len);
            } else if (kind == JSONRPC_REQUEST) {
                if (answer_request(c, msg) == -1) {
                    cJSON_Delete(msg);
                    snprintf(err, errlen, "out of memory");
                    return -1;
                }
            } else if (kind == JSONRPC_RESPONSE) {
                const cJSON *rid = cJSON_GetObjectItemCaseSensitive(msg, "id");
                if (cJSON_IsNumber(rid) && rid->valuedouble == (double)id) {
                    *answer = msg;
                    return 0;
                }
            }
            cJSON_Delete(msg);
        }
        if (r < 0) {
            if (r == -2)
                snprintf(err, errlen, "out of memory");
            else
                snprintf(err, errlen,
                         "%s: the server wrote a line longer than max_line_bytes (%zu)", method,
                         c->max_line);
            return -1;
        }
        if (c->out_eof) {
            snprintf(err, errlen, "%s: the server closed its stdout without answering", method);
            return -1;
        }
        char why[256];
        if (pump(c, deadline, false, why, sizeof(why)) == -1) {
            snprintf(err, errlen, "%s: %s", method, why);
            return -1;
        }
    }
}

/* Flushes queued bytes (a notification) within the deadline. */
static int flush_queue(struct pin_child *c, char *err, size_t errlen)
{
    int64_t deadline = util_mono_ms() + PIN_EXCHANGE_MS;
    while (c->woff < c->wlen) {
        if (pump(c, deadline, false, err, errlen) == -1)
            return -1;
    }
    return 0;
}

/* Closes stdin, gives the server PIN_REAP_MS to exit, then kills its process group; reaps it
 * and releases its cgroup leaf. */
static void stop_child(struct pin_child *c)
{
    close_fd(&c->in);
    if (c->pid > 0) {
        int64_t deadline = util_mono_ms() + PIN_REAP_MS;
        char ignored[64];
        for (;;) {
            int st;
            pid_t p = waitpid(c->pid, &st, WNOHANG);
            if (p == c->pid) {
                c->status = st;
                break;
            }
            if (p == -1 && errno != EINTR)
                break;
            int64_t left = deadline - util_mono_ms();
            if (left <= 0) {
                kill(-c->pid, SIGKILL); /* the child leads its own session and group */
                kill(c->pid, SIGKILL);
                while ((p = waitpid(c->pid, &st, 0)) == -1 && errno == EINTR)
                    ;
                if (p == c->pid)
                    c->status = st;
                break;
            }
            if (c->out_eof && c->err == -1) {
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
            } else {
                /* Drains what it still writes, so it is not stuck on a full pipe. */
                pump(c, util_mono_ms() + (left < 20 ? left : 20), true, ignored, sizeof(ignored));
            }
        }
        c->pid = -1;
    }
    if (c->cgroup[0] != '\0') {
        sandbox_cgroup_release(c->cgroup);
        c->cgroup[0] = '\0';
    }
    close_fd(&c->out);
    close_fd(&c->err);
}

/* ---- starting it as the daemon would ---------------------------------------------------------
 * The environment and the plan are the spawner's own (childenv.c, plan.c). */

static int start_child(const struct config *cfg, const struct sandbox_features *feat,
                       const struct sandbox_profile *prof, const struct config_manifest *m,
                       struct pin_child *c, char *err, size_t errlen)
{
    /* Any allowed tenant's identity will do to list tools; none allowed: NULL, nobody. */
    const struct config_tenant *t = NULL;
    for (size_t i = 0; i < cfg->ntenants && t == NULL; i++) {
        if (config_tenant_allows(&cfg->tenants[i], m->name))
            t = &cfg->tenants[i];
    }
    char *envp[PIN_MAX_ENV];
    const char *step;
    char why[384] = "";
    if (childenv_build(m, t, envp, PIN_MAX_ENV, &step, why, sizeof(why)) == -1) {
        snprintf(err, errlen, "cannot start %s: step \"%s\" failed: %s%s%s", m->name, step,
                 strerror(errno), why[0] != '\0' ? ": " : "", why);
        return -1;
    }
    /* Leaf ids apart from the daemon's (<server>-<small sequence number>) should one run. */
    struct plan_cgroup cgx;
    struct spawn_plan plan;
    plan_build(&plan, &cgx, feat, prof, m, t, envp, &cfg->limits,
               ((uint64_t)1 << 40) | (uint64_t)getpid());
    struct spawn_result res;
    int rc = spawn_start(&plan, &res);
    childenv_free(envp);
    snprintf(c->cgroup, sizeof(c->cgroup), "%s", cgx.path);
    if (rc == -1) {
        snprintf(err, errlen, "cannot start %s (%s): step \"%s\" failed: %s", m->name, m->argv[0],
                 res.step, strerror(res.err));
        if (c->cgroup[0] != '\0') {
            sandbox_cgroup_release(c->cgroup);
            c->cgroup[0] = '\0';
        }
        return -1;
    }
    c->pid = res.pid;
    c->in = res.fd_stdin;
    c->out = res.fd_stdout;
    c->err = res.fd_stderr;
    return 0;
}

/* ---- the listing ----------------------------------------------------------------------------- */

struct pin_tool {
    char *name;
    char pin[JCS_PIN_HEX];
    char *schema_error; /* why its schemas cannot be validated with, or NULL */
};

struct pin_list {
    struct pin_tool *v;
    size_t n;
};

static void list_free(struct pin_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].schema_error);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static const struct pin_tool *list_find(const struct pin_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    }
    return NULL;
}

/* An error answer as "message (code N)". */
static void rpc_error(const cJSON *msg, const char *method, char *err, size_t errlen)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(e, "message");
    snprintf(err, errlen, "%s: the server answered with an error: %.200s (code %.0f)", method,
             cJSON_IsString(text) ? text->valuestring : "(no message)",
             cJSON_IsNumber(code) ? code->valuedouble : 0.0);
}

static int list_tools(struct pin_child *c, bool declared, struct pin_list *l, char *err,
                      size_t errlen)
{
    char *cursor = NULL;
    int rc = -1;
    for (int page = 0;; page++) {
        if (page == PIN_MAX_PAGES) {
            snprintf(err, errlen, "tools/list: more than %d pages", PIN_MAX_PAGES);
            goto out;
        }
        cJSON *params = cJSON_CreateObject();
        if (params == NULL ||
            (cursor != NULL && !cJSON_AddStringToObject(params, "cursor", cursor))) {
            cJSON_Delete(params);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        cJSON *msg;
        if (exchange(c, "tools/list", params, &msg, err, errlen) == -1)
            goto out;
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
        if (result == NULL) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
            if (!declared && page == 0 && cJSON_IsNumber(code) && code->valuedouble == -32601) {
                /* No tools capability and no tools/list: a server without tools. */
                cJSON_Delete(msg);
                rc = 0;
                goto out;
            }
            rpc_error(msg, "tools/list", err, errlen);
            cJSON_Delete(msg);
            goto out;
        }
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(result, "tools");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(result, "nextCursor");
        if (!cJSON_IsArray(tools) ||
            (next != NULL && !cJSON_IsString(next) && !cJSON_IsNull(next))) {
            snprintf(err, errlen,
                     "tools/list: the result needs a \"tools\" array (and "
                     "\"nextCursor\", when present, must be a string)");
            cJSON_Delete(msg);
            goto out;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, tools)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
            if (!cJSON_IsObject(t) || !cJSON_IsString(name) || name->valuestring[0] == '\0') {
                snprintf(err, errlen, "tools/list: page %d: a tool without a name", page + 1);
                cJSON_Delete(msg);
                goto out;
            }
            if (list_find(l, name->valuestring) != NULL) {
                snprintf(err, errlen, "tools/list: the tool \"%.128s\" is listed twice",
                         name->valuestring);
                cJSON_Delete(msg);
                goto out;
            }
            if (l->n == PIN_MAX_TOOLS) {
                snprintf(err, errlen, "tools/list: more than %d tools", PIN_MAX_TOOLS);
                cJSON_Delete(msg);
                goto out;
            }
            struct pin_tool *grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
            if (grown == NULL || (grown[l->n].name = strdup(name->valuestring)) == NULL) {
                if (grown != NULL)
                    l->v = grown;
                snprintf(err, errlen, "out of memory");
                cJSON_Delete(msg);
                goto out;
            }
            l->v = grown;
            l->v[l->n].schema_error = NULL;
            if (jcs_tool_pin(t, l->v[l->n].pin) == -1) {
                snprintf(err, errlen,
                         "tools/list: the definition of \"%.128s\" cannot be canonicalized "
                         "(RFC 8785: invalid UTF-8, a non-finite number, or nested too deep)",
                         name->valuestring);
                free(l->v[l->n].name);
                cJSON_Delete(msg);
                goto out;
            }
            /* What the daemon would compile when it verifies this definition. */
            struct contract_schemas *sc = contract_schemas_get(t, l->v[l->n].pin);
            const char *bad = sc != NULL ? contract_schema_error(sc) : "out of memory";
            if (bad != NULL)
                l->v[l->n].schema_error = strdup(bad);
            contract_schemas_unref(sc);
            l->n++;
        }
        free(cursor);
        cursor = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
        bool more = cJSON_IsString(next);
        cJSON_Delete(msg);
        if (more && cursor == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (!more)
            break;
    }
    rc = 0;
out:
    free(cursor);
    return rc;
}

/* initialize, notifications/initialized, tools/list. */
static int converse(struct pin_child *c, struct pin_list *l, char *err, size_t errlen)
{
    cJSON *params = cJSON_CreateObject();
    cJSON *info = cJSON_AddObjectToObject(params, "clientInfo");
    /* Every client capability: some servers list tools only to clients that can sample, elicit
     * or give roots, and a pin must cover every tool a caller may be offered. */
    cJSON *caps = cJSON_AddObjectToObject(params, "capabilities");
    if (params == NULL || info == NULL || caps == NULL ||
        cJSON_AddStringToObject(params, "protocolVersion", PIN_PROTOCOL) == NULL ||
        cJSON_AddObjectToObject(caps, "sampling") == NULL ||
        cJSON_AddObjectToObject(caps, "elicitation") == NULL ||
        cJSON_AddFalseToObject(cJSON_AddObjectToObject(caps, "roots"), "listChanged") == NULL ||
        cJSON_AddStringToObject(info, "name", "mcpvisor-pin") == NULL ||
        cJSON_AddStringToObject(info, "version", MCPVISOR_VERSION) == NULL) {
        cJSON_Delete(params);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cJSON *msg;
    if (exchange(c, "initialize", params, &msg, err, errlen) == -1)
        return -1;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
    if (!cJSON_IsObject(result)) {
        if (result == NULL)
            rpc_error(msg, "initialize", err, errlen);
        else
            snprintf(err, errlen, "initialize: the result is not an object");
        cJSON_Delete(msg);
        return -1;
    }
    const cJSON *server_caps = cJSON_GetObjectItemCaseSensitive(result, "capabilities");
    bool declared = cJSON_GetObjectItemCaseSensitive(server_caps, "tools") != NULL;
    cJSON_Delete(msg);
    if (queue(c, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}") == -1) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (flush_queue(c, err, errlen) == -1)
        return -1;
    return list_tools(c, declared, l, err, errlen);
}

/* ---- the report -------------------------------------------------------------------------------
 */

enum pin_status { PIN_MATCH = 0, PIN_DRIFT, PIN_UNPINNED, PIN_NEW, PIN_MISSING };

/* A name as printable ASCII: other bytes as \xNN (a server chooses its tools' names, and they
 * must not drive the operator's terminal). */
static void safe_name(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s != '\0' && o + 5 < outlen; s++) {
        unsigned char b = (unsigned char)*s;
        if (b >= 0x20 && b < 0x7f && b != '\\')
            out[o++] = (char)b;
        else {
            out[o++] = '\\';
            out[o++] = 'x';
            util_hex(&b, 1, out + o);
            o += 2;
        }
    }
    out[o] = '\0';
}

static void print_row(FILE *out, int width, const char *name, const char *pin, const char *status)
{
    char safe[4 * 128 + 8];
    safe_name(name, safe, sizeof(safe));
    fprintf(out, "%-*s  %-64s  %s\n", width, safe, pin, status);
}

/* A schema the daemon cannot validate with: named with its keywords, never silently ignored. */
static void print_schema_error(FILE *out, const char *server, const struct pin_tool *t)
{
    char name[4 * 128 + 8], why[4 * 1024 + 8];
    safe_name(t->name, name, sizeof(name));
    safe_name(t->schema_error, why, sizeof(why));
    fprintf(out, "%s: tool %s: schema cannot be validated: %s\n", server, name, why);
}

/* ---- writing the manifest ----------------------------------------------------------------------
 */

struct overlay {
    const char *path, *text;
    size_t len;
};

static int overlay_read(void *ctx, const char *path, char **buf, size_t *len)
{
    const struct overlay *o = ctx;
    if (strcmp(path, o->path) != 0)
        return config_source_fs.read(config_source_fs.ctx, path, buf, len);
    *buf = malloc(o->len + 1);
    if (*buf == NULL)
        return -1;
    memcpy(*buf, o->text, o->len + 1);
    *len = o->len;
    return 0;
}

static int overlay_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    (void)ctx;
    return config_source_fs.list(config_source_fs.ctx, dir, names, n);
}

/* cJSON_Print indents with tabs and puts a tab after each ':'. Raw tabs cannot occur inside its
 * strings (it escapes them), so every tab is layout: two spaces at the start of a line, one
 * space elsewhere. Returns a malloc'ed text ending in a newline. */
static char *two_spaces(const char *in)
{
    size_t tabs = 0, n = 0;
    for (; in[n] != '\0'; n++)
        tabs += in[n] == '\t';
    char *out = malloc(n + tabs + 2);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    bool bol = true;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\t') {
            out[o++] = ' ';
            if (bol)
                out[o++] = ' ';
            continue;
        }
        bol = in[i] == '\n';
        out[o++] = in[i];
    }
    out[o++] = '\n';
    out[o] = '\0';
    return out;
}

static int write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w == -1 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replaces `path` (symlinks resolved) with text: a temporary file beside it with its mode and
 * owner, synced, renamed over it, the folder synced. */
static int replace_file(const char *path, const char *text, char *err, size_t errlen)
{
    char real[PATH_MAX], tmp[PATH_MAX + 32];
    struct stat st;
    if (realpath(path, real) == NULL || stat(real, &st) == -1) {
        snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
        return -1;
    }
    char *slash = strrchr(real, '/');
    *slash = '\0';
    const char *dir = real[0] != '\0' ? real : "/";
    const char *base = slash + 1;
    snprintf(tmp, sizeof(tmp), "%s/.%s.pin-XXXXXX", real, base);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "cannot create a temporary file in %.300s: %s", dir, strerror(errno));
        return -1;
    }
    if (fchmod(fd, st.st_mode & 07777) == -1 ||
        (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) == -1) ||
        write_all(fd, text, strlen(text)) == -1 || fsync(fd) == -1) {
        snprintf(err, errlen, "%.300s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) == -1) {
        snprintf(err, errlen, "%.300s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    *slash = '/';
    if (rename(tmp, real) == -1) {
        snprintf(err, errlen, "rename %.300s → %.300s: %s", tmp, real, strerror(errno));
        unlink(tmp);
        return -1;
    }
    *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd != -1) {
        fsync(dfd); /* the rename is durable; a failure here loses nothing already written */
        close(dfd);
    }
    return 0;
}

/* The manifest's text with the observed pins; NULL with a message. */
static char *updated_manifest(const char *orig, size_t len, const struct pin_list *l, char *err,
                              size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(orig, len);
    char *printed = NULL, *text = NULL;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "the manifest no longer parses as a JSON object");
        goto out;
    }
    cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (tools == NULL)
        tools = cJSON_AddObjectToObject(root, "tools");
    if (!cJSON_IsObject(tools)) {
        snprintf(err, errlen, "/tools is not an object");
        goto out;
    }
    for (size_t i = 0; i < l->n; i++) {
        cJSON *entry = cJSON_GetObjectItemCaseSensitive(tools, l->v[i].name);
        if (entry == NULL) {
            entry = cJSON_CreateObject();
            if (entry == NULL || !cJSON_AddStringToObject(entry, "version", "1") ||
                !cJSON_AddStringToObject(entry, "sha256", l->v[i].pin) ||
                !cJSON_AddItemToObject(tools, l->v[i].name, entry)) {
                cJSON_Delete(entry);
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            continue;
        }
        if (!cJSON_IsObject(entry)) {
            snprintf(err, errlen, "/tools/%s is not an object", l->v[i].name);
            goto out;
        }
        cJSON *pin = cJSON_CreateString(l->v[i].pin);
        bool ok = pin != NULL && (cJSON_GetObjectItemCaseSensitive(entry, "sha256") != NULL
                                      ? cJSON_ReplaceItemInObjectCaseSensitive(entry, "sha256", pin)
                                      : cJSON_AddItemToObject(entry, "sha256", pin));
        if (!ok) {
            cJSON_Delete(pin);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    printed = cJSON_Print(root);
    text = printed != NULL ? two_spaces(printed) : NULL;
    if (text == NULL)
        snprintf(err, errlen, "out of memory");
out:
    cJSON_free(printed);
    cJSON_Delete(root);
    return text;
}

static int write_manifest(const struct config *cfg, const struct config_manifest *m,
                          const char *path, const char *orig, size_t origlen,
                          const struct pin_list *l, char *err, size_t errlen)
{
    char *now = NULL, *text = NULL;
    size_t nowlen;
    int rc = -1;
    if (config_source_fs.read(config_source_fs.ctx, path, &now, &nowlen) == -1) {
        snprintf(err, errlen, "%s: %s", m->file, strerror(errno));
        return -1;
    }
    if (nowlen != origlen || memcmp(now, orig, origlen) != 0) {
        snprintf(err, errlen, "%s changed while the server was listed; run pin again", m->file);
        goto out;
    }
    text = updated_manifest(orig, origlen, l, err, errlen);
    if (text == NULL)
        goto out;
    /* What `mcpvisor check` would say of the configuration with the new manifest in place. */
    struct overlay ov = {path, text, strlen(text)};
    struct config_source src = {overlay_read, overlay_list, &ov};
    char why[CONFIG_ERR_MAX];
    struct config *after = config_load(&src, cfg->path, why, sizeof(why));
    if (after == NULL) {
        snprintf(err, errlen, "not written: the updated manifest would not pass check: %s", why);
        goto out;
    }
    config_free(after);
    rc = replace_file(path, text, err, errlen);
out:
    free(text);
    free(now);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------------
 */

int pin_run(const struct config *cfg, const struct sandbox_features *feat,
            const struct sandbox_profile *prof, const char *server, bool write, FILE *out)
{
    char err[1024] = "";
    char path[PATH_MAX];
    char *orig = NULL;
    size_t origlen = 0;
    struct pin_list l = {NULL, 0};
    int code = PIN_EXIT_ERROR;

    const struct config_manifest *m = config_manifest_find(cfg, server);
    if (m == NULL) {
        fprintf(stderr, "mcpvisor pin: unknown server \"%s\" (no manifest %s.json in %s)\n", server,
                server, cfg->manifests_dir);
        return PIN_EXIT_ERROR;
    }
    size_t dl = strlen(cfg->manifests_dir);
    if (snprintf(path, sizeof(path), "%.*s/%s.json",
                 (int)(dl > 1 && cfg->manifests_dir[dl - 1] == '/' ? dl - 1 : dl),
                 cfg->manifests_dir, m->name) >= (int)sizeof(path)) {
        fprintf(stderr, "mcpvisor pin: %s: path too long\n", m->file);
        return PIN_EXIT_ERROR;
    }
    /* The bytes the pins are written into; --write refuses if they change meanwhile. */
    if (write && config_source_fs.read(config_source_fs.ctx, path, &orig, &origlen) == -1) {
        fprintf(stderr, "mcpvisor pin: %s: %s\n", m->file, strerror(errno));
        return PIN_EXIT_ERROR;
    }

    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    struct pin_child c = {.pid = -1, .in = -1, .out = -1, .err = -1, .status = -1};
    c.max_line = cfg->limits.max_line_bytes;
    const struct sandbox_profile *p = &prof[m - cfg->manifests];
    int rc = start_child(cfg, feat, p, m, &c, err, sizeof(err));
    if (rc == 0)
        rc = converse(&c, &l, err, sizeof(err));
    stop_child(&c);
    signal(SIGPIPE, old_pipe);
    free(c.rbuf);
    free(c.wbuf);
    if (rc == -1) {
        fprintf(stderr, "mcpvisor pin: %s: %s\n", m->name, err);
        if (c.status != -1 && WIFEXITED(c.status))
            fprintf(stderr, "mcpvisor pin: %s: the server exited with status %d\n", m->name,
                    WEXITSTATUS(c.status));
        else if (c.status != -1 && WIFSIGNALED(c.status))
            fprintf(stderr, "mcpvisor pin: %s: the server was killed by signal %d\n", m->name,
                    WTERMSIG(c.status));
        if (c.ntail > 0) {
            char safe[4 * PIN_STDERR_TAIL + 8];
            safe_name(c.tail, safe, sizeof(safe));
            fprintf(stderr, "mcpvisor pin: %s: its last stderr output: %s\n", m->name, safe);
        }
        goto out;
    }

    /* The table: served tools in the server's order, then the manifest's tools it lacks. */
    int width = 4;
    for (size_t i = 0; i < l.n; i++)
        width = strlen(l.v[i].name) > (size_t)width ? (int)strlen(l.v[i].name) : width;
    for (size_t i = 0; i < m->ntools; i++)
        width = strlen(m->tools[i].name) > (size_t)width ? (int)strlen(m->tools[i].name) : width;
    width = width > PIN_NAME_WIDTH ? PIN_NAME_WIDTH : width;
    size_t count[PIN_MISSING + 1] = {0};
    for (size_t i = 0; i < l.n; i++) {
        const struct config_tool *t = config_tool_find(m, l.v[i].name);
        char status[256];
        enum pin_status s;
        if (t == NULL) {
            s = PIN_NEW;
            snprintf(status, sizeof(status), "new (not in manifest)");
        } else if (t->sha256 == NULL) {
            s = PIN_UNPINNED;
            snprintf(status, sizeof(status), "unpinned (in manifest, no sha256)");
        } else if (strcmp(t->sha256, l.v[i].pin) != 0) {
            s = PIN_DRIFT;
            snprintf(status, sizeof(status), "DRIFT (manifest %s → server %s)", t->sha256,
                     l.v[i].pin);
        } else {
            s = PIN_MATCH;
            snprintf(status, sizeof(status), "pinned (matches)");
        }
        count[s]++;
        print_row(out, width, l.v[i].name, l.v[i].pin, status);
        if (l.v[i].schema_error != NULL)
            print_schema_error(out, m->name, &l.v[i]);
    }
    for (size_t i = 0; i < m->ntools; i++) {
        if (list_find(&l, m->tools[i].name) != NULL)
            continue;
        count[PIN_MISSING]++;
        print_row(out, width, m->tools[i].name, "-", "missing (in manifest, not served)");
    }
    fprintf(out,
            "%s: %zu tools served: %zu pinned, %zu drift, %zu unpinned, %zu new, %zu missing\n",
            m->name, l.n, count[PIN_MATCH], count[PIN_DRIFT], count[PIN_UNPINNED], count[PIN_NEW],
            count[PIN_MISSING]);
    bool differs = count[PIN_MATCH] != l.n || count[PIN_MISSING] > 0;
    code = differs ? PIN_EXIT_DIFFERS : PIN_EXIT_MATCH;

    if (write) {
        if (count[PIN_MATCH] == l.n) {
            fprintf(out, "%s: every listed tool is already pinned; nothing written\n", m->file);
        } else {
            if (write_manifest(cfg, m, path, orig, origlen, &l, err, sizeof(err)) == -1) {
                fprintf(stderr, "mcpvisor pin: %s\n", err);
                code = PIN_EXIT_ERROR;
                goto out;
            }
            fprintf(out, "%s: wrote %zu pins (%zu new tools)\n", m->file,
                    count[PIN_DRIFT] + count[PIN_UNPINNED] + count[PIN_NEW], count[PIN_NEW]);
            for (size_t i = 0; i < l.n; i++) {
                const struct config_tool *t = config_tool_find(m, l.v[i].name);
                if (t == NULL || t->sha256 == NULL || strcmp(t->sha256, l.v[i].pin) == 0)
                    continue;
                char safe[4 * 128 + 8];
                safe_name(l.v[i].name, safe, sizeof(safe));
                if (t->version != NULL)
                    fprintf(out,
                            "bump the version of %s (now \"%s\") if callers depend on it: its "
                            "definition changed\n",
                            safe, t->version);
                else
                    fprintf(out,
                            "bump the version of %s (now none) if callers depend on it: its "
                            "definition changed\n",
                            safe);
            }
        }
        if (count[PIN_MISSING] > 0)
            fprintf(out,
                    "%s: still names %zu tool(s) the server does not list (kept; remove them by "
                    "hand if they are gone for good)\n",
                    m->file, count[PIN_MISSING]);
        code = count[PIN_MISSING] > 0 ? PIN_EXIT_DIFFERS : PIN_EXIT_MATCH;
    }
out:
    list_free(&l);
    free(orig);
    return code;
}

/* ---- mcpvisor check ------------------------------------------------------------------------ */

int pin_survey(const struct config *cfg, const struct sandbox_features *feat,
               const struct sandbox_profile *prof, FILE *out)
{
    int code = 0;
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < cfg->nmanifests; k++) {
        const struct config_manifest *m = &cfg->manifests[k];
        struct pin_child c = {.pid = -1, .in = -1, .out = -1, .err = -1, .status = -1};
        struct pin_list l = {NULL, 0};
        char err[1024] = "";
        c.max_line = cfg->limits.max_line_bytes;
        int rc = start_child(cfg, feat, &prof[k], m, &c, err, sizeof(err));
        if (rc == 0)
            rc = converse(&c, &l, err, sizeof(err));
        stop_child(&c);
        free(c.rbuf);
        free(c.wbuf);
        if (rc == -1) {
            char safe[4 * 1024 + 8];
            safe_name(err, safe, sizeof(safe));
            fprintf(out, "%s: warning: cannot list its tools to check them: %s\n", m->name, safe);
            list_free(&l);
            continue;
        }
        size_t drift = 0, unpinned = 0, unlisted = 0, bad = 0, missing = 0;
        for (size_t i = 0; i < l.n; i++) {
            const struct config_tool *t = config_tool_find(m, l.v[i].name);
            char name[4 * 128 + 8];
            safe_name(l.v[i].name, name, sizeof(name));
            if (t == NULL) {
                unlisted++;
                fprintf(out, "%s: tool %s is not in the manifest (%s)\n", m->name, name,
                        m->unlisted_tools_allow ? "served: unlisted_tools is allow"
                                                : "hidden: unlisted_tools is deny");
            } else if (t->sha256 == NULL) {
                unpinned++;
            } else if (strcmp(t->sha256, l.v[i].pin) != 0) {
                drift++;
                fprintf(out, "%s: tool %s drifted from its pin (manifest %s, server %s)%s\n",
                        m->name, name, t->sha256, l.v[i].pin,
                        m->pin_mode == CONFIG_PIN_ENFORCE ? ": it will be hidden" : "");
                if (m->pin_mode == CONFIG_PIN_ENFORCE)
                    code = 1;
            }
            if (l.v[i].schema_error != NULL) {
                bad++;
                print_schema_error(out, m->name, &l.v[i]);
                if (m->pin_mode == CONFIG_PIN_ENFORCE)
                    code = 1; /* hidden at run time; warn and off serve it unvalidated */
            }
        }
        for (size_t i = 0; i < m->ntools; i++)
            missing += list_find(&l, m->tools[i].name) == NULL;
        fprintf(out,
                "%s: %zu tools listed: %zu drift, %zu unpinned, %zu not in the manifest, %zu "
                "with schemas that cannot be validated; %zu in the manifest not listed\n",
                m->name, l.n, drift, unpinned, unlisted, bad, missing);
        list_free(&l);
    }
    signal(SIGPIPE, old_pipe);
    return code;
}
