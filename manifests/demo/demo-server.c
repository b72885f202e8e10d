/*
 * demo-server.c — the stdio MCP server that `make run` puts behind mcpvisor.
 *
 * Three small read-only tools: echo, word_count and utc_time. It speaks newline-delimited
 * JSON-RPC 2.0 on stdin/stdout (one message per line, stdout flushed after each) and writes
 * key=value log lines on stderr, filtered by LOG_LEVEL (debug, info, warn, error; default info).
 * It keeps no state between calls, so it can be restarted or shared at any time.
 *
 * Errors follow MCP's split: a malformed request or bad tool arguments is a JSON-RPC error
 * (-32602 for arguments); a tool that runs and fails answers with isError content. Nothing but
 * JSON-RPC messages ever goes to stdout. Exits 0 on stdin EOF, 1 if stdout cannot be written.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SERVER_NAME     "demo-server"
#define SERVER_VERSION  "1.0.0"
#define PROTOCOL_LATEST "2025-11-25"

#define RPC_PARSE_ERROR      -32700
#define RPC_INVALID_REQUEST  -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS   -32602
#define RPC_INTERNAL_ERROR   -32603

/* ---- logging ---- */

enum level { LEVEL_DEBUG, LEVEL_INFO, LEVEL_WARN, LEVEL_ERROR };

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static enum level log_min = LEVEL_INFO;

__attribute__((format(printf, 2, 3))) static void log_at(enum level lvl, const char *fmt, ...)
{
    if (lvl < log_min)
        return;
    char line[1024];
    int n = snprintf(line, sizeof(line), "level=%s server=" SERVER_NAME " ", level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

/* Reads LOG_LEVEL; an unknown value keeps "info" and says so. */
static void log_setup(void)
{
    const char *env = getenv("LOG_LEVEL");
    if (env == NULL || *env == '\0')
        return;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(env, level_names[i]) == 0) {
            log_min = (enum level)i;
            return;
        }
    }
    log_at(LEVEL_WARN, "msg=unknown_log_level using=info");
}

/*
 * Copies an outside string into buf as a log-safe token: printable ASCII other than space, quote
 * and backslash, at most bufsize - 1 bytes; anything else becomes '?'. Returns buf.
 */
static const char *log_token(char *buf, size_t bufsize, const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < bufsize; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c > ' ' && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    buf[i] = '\0';
    return buf;
}

/*
 * Length of the longest prefix of s of at most max bytes that does not split a UTF-8 sequence,
 * so a client's string can be quoted, shortened, in an error message that stays valid UTF-8.
 */
static int utf8_prefix(const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    return (int)len;
}

/* ---- JSON-RPC messages ---- */

/* A JSON-RPC error: code and a message naming the input and the rule. */
struct rpc_error {
    int code;
    char message[192];
};

__attribute__((format(printf, 3, 4))) static void set_error(struct rpc_error *err, int code,
                                                            const char *fmt, ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

static void set_oom(struct rpc_error *err)
{
    set_error(err, RPC_INTERNAL_ERROR, "out of memory");
}

/* Builds {"jsonrpc","id",...}; id NULL means null. Returns NULL on allocation failure. */
static cJSON *new_response(const cJSON *id)
{
    cJSON *msg = cJSON_CreateObject();
    cJSON *id_copy = id != NULL ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
    if (msg == NULL || id_copy == NULL || cJSON_AddStringToObject(msg, "jsonrpc", "2.0") == NULL) {
        cJSON_Delete(msg);
        cJSON_Delete(id_copy);
        return NULL;
    }
    cJSON_AddItemToObject(msg, "id", id_copy);
    return msg;
}

static cJSON *error_response(const cJSON *id, const struct rpc_error *err)
{
    cJSON *msg = new_response(id);
    cJSON *e = cJSON_AddObjectToObject(msg, "error");
    if (e == NULL || cJSON_AddNumberToObject(e, "code", err->code) == NULL ||
        cJSON_AddStringToObject(e, "message", err->message) == NULL) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

/* Takes ownership of result. */
static cJSON *result_response(const cJSON *id, cJSON *result)
{
    cJSON *msg = new_response(id);
    if (msg == NULL) {
        cJSON_Delete(result);
        return NULL;
    }
    cJSON_AddItemToObject(msg, "result", result);
    return msg;
}

/* Writes msg as one line and flushes. Returns 0, or -1 if stdout is gone. */
static int send_message(const cJSON *msg)
{
    char *text = cJSON_PrintUnformatted(msg);
    if (text == NULL) {
        log_at(LEVEL_ERROR, "msg=out_of_memory what=response");
        return 0; /* the request goes unanswered, but the server lives on */
    }
    int rc = (fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) == EOF)
                 ? -1
                 : 0;
    int saved = errno;
    free(text);
    errno = saved;
    return rc;
}

/* {"content":[{"type":"text","text":text}],"isError":is_error}, or NULL on allocation failure. */
static cJSON *text_result(const char *text, bool is_error)
{
    cJSON *result = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(result, "content");
    cJSON *item = cJSON_CreateObject();
    if (item == NULL || content == NULL) {
        cJSON_Delete(item);
        cJSON_Delete(result);
        return NULL;
    }
    cJSON_AddItemToArray(content, item);
    if (cJSON_AddStringToObject(item, "type", "text") == NULL ||
        cJSON_AddStringToObject(item, "text", text) == NULL ||
        cJSON_AddBoolToObject(result, "isError", is_error) == NULL) {
        cJSON_Delete(result);
        return NULL;
    }
    return result;
}

/* ---- tools ---- */

/*
 * Checks a tool's arguments: every property must be one of `names` and a string, and every name
 * must be present. Returns 0, or -1 with err set to a -32602 naming the argument.
 */
static int check_string_args(const cJSON *args, const char *const *names, size_t n_names,
                             struct rpc_error *err)
{
    const cJSON *arg;
    cJSON_ArrayForEach(arg, args)
    {
        size_t i = 0;
        while (i < n_names && strcmp(arg->string, names[i]) != 0)
            i++;
        if (i == n_names) {
            set_error(err, RPC_INVALID_PARAMS, "invalid arguments: unexpected argument \"%.*s\"",
                      utf8_prefix(arg->string, 64), arg->string);
            return -1;
        }
        if (!cJSON_IsString(arg)) {
            set_error(err, RPC_INVALID_PARAMS, "invalid arguments: \"%s\" must be a string",
                      names[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < n_names; i++) {
        if (!cJSON_HasObjectItem(args, names[i])) {
            set_error(err, RPC_INVALID_PARAMS, "invalid arguments: \"%s\" is required", names[i]);
            return -1;
        }
    }
    return 0;
}

/* A tool returns its result (owned by the caller), or NULL with err set. */
typedef cJSON *tool_fn(const cJSON *args, struct rpc_error *err);

static const char *const text_arg[] = {"text"};

static cJSON *tool_echo(const cJSON *args, struct rpc_error *err)
{
    if (check_string_args(args, text_arg, 1, err) == -1)
        return NULL;
    cJSON *result = text_result(cJSON_GetObjectItemCaseSensitive(args, "text")->valuestring, false);
    if (result == NULL)
        set_oom(err);
    return result;
}

/*
 * Lines are newline-terminated lines plus a last unterminated one; words are runs of bytes other
 * than ASCII white space; characters are Unicode code points (UTF-8 continuation bytes are not
 * counted).
 */
static cJSON *tool_word_count(const cJSON *args, struct rpc_error *err)
{
    if (check_string_args(args, text_arg, 1, err) == -1)
        return NULL;
    const char *text = cJSON_GetObjectItemCaseSensitive(args, "text")->valuestring;
    size_t lines = 0, words = 0, chars = 0;
    bool in_word = false;
    const unsigned char *p = (const unsigned char *)text;
    for (; *p != '\0'; p++) {
        bool space = *p == ' ' || (*p >= '\t' && *p <= '\r');
        if (*p == '\n')
            lines++;
        if (!space && !in_word)
            words++;
        in_word = !space;
        if ((*p & 0xC0) != 0x80)
            chars++;
    }
    if (p != (const unsigned char *)text && p[-1] != '\n')
        lines++;

    /* Structured content for clients that read it; the same JSON as text for those that don't. */
    cJSON *counts = cJSON_CreateObject();
    if (counts == NULL || cJSON_AddNumberToObject(counts, "lines", (double)lines) == NULL ||
        cJSON_AddNumberToObject(counts, "words", (double)words) == NULL ||
        cJSON_AddNumberToObject(counts, "characters", (double)chars) == NULL) {
        cJSON_Delete(counts);
        set_oom(err);
        return NULL;
    }
    char *json = cJSON_PrintUnformatted(counts);
    cJSON *result = json != NULL ? text_result(json, false) : NULL;
    free(json);
    if (result == NULL) {
        cJSON_Delete(counts);
        set_oom(err);
        return NULL;
    }
    cJSON_AddItemToObject(result, "structuredContent", counts);
    return result;
}

static cJSON *tool_utc_time(const cJSON *args, struct rpc_error *err)
{
    if (check_string_args(args, NULL, 0, err) == -1)
        return NULL;
    char text[128];
    bool failed = false;
    struct timespec now;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &now) == -1) {
        snprintf(text, sizeof(text), "cannot read the system clock: %s", strerror(errno));
        failed = true;
    } else if (gmtime_r(&now.tv_sec, &tm) == NULL ||
               strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(text, sizeof(text), "the system clock is out of range");
        failed = true;
    }
    /* A clock failure is the tool's failure, not the caller's: isError content. */
    cJSON *result = text_result(text, failed);
    if (result == NULL)
        set_oom(err);
    return result;
}

static const struct tool {
    const char *name;
    const char *definition; /* JSON text of the tool as tools/list shows it */
    tool_fn *call;
} tools[] = {
    {"echo",
     "{\"name\":\"echo\",\"title\":\"Echo\","
     "\"description\":\"Returns the given text unchanged.\","
     "\"inputSchema\":{\"type\":\"object\","
     "\"properties\":{\"text\":{\"type\":\"string\",\"description\":\"The text to return.\"}},"
     "\"required\":[\"text\"],\"additionalProperties\":false},"
     "\"annotations\":{\"readOnlyHint\":true,\"idempotentHint\":true,\"openWorldHint\":false}}",
     tool_echo},
    {"word_count",
     "{\"name\":\"word_count\",\"title\":\"Word count\","
     "\"description\":\"Counts the lines, words (runs of non-space characters) and characters "
     "(Unicode code points) of a text.\","
     "\"inputSchema\":{\"type\":\"object\","
     "\"properties\":{\"text\":{\"type\":\"string\",\"description\":\"The text to count.\"}},"
     "\"required\":[\"text\"],\"additionalProperties\":false},"
     "\"outputSchema\":{\"type\":\"object\",\"properties\":{"
     "\"lines\":{\"type\":\"integer\",\"minimum\":0},"
     "\"words\":{\"type\":\"integer\",\"minimum\":0},"
     "\"characters\":{\"type\":\"integer\",\"minimum\":0}},"
     "\"required\":[\"lines\",\"words\",\"characters\"],\"additionalProperties\":false},"
     "\"annotations\":{\"readOnlyHint\":true,\"idempotentHint\":true,\"openWorldHint\":false}}",
     tool_word_count},
    {"utc_time",
     "{\"name\":\"utc_time\",\"title\":\"UTC time\","
     "\"description\":\"Returns the current time in UTC as an RFC 3339 timestamp, "
     "e.g. 2025-01-31T09:30:00Z.\","
     "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false},"
     "\"annotations\":{\"readOnlyHint\":true,\"openWorldHint\":false}}",
     tool_utc_time},
};

#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

/* ---- methods: each returns its result (owned by the caller), or NULL with err set ---- */

static cJSON *method_initialize(const cJSON *params, struct rpc_error *err)
{
    static const char *const known[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    const cJSON *asked = cJSON_GetObjectItemCaseSensitive(params, "protocolVersion");
    const char *version = PROTOCOL_LATEST;
    for (size_t i = 0; cJSON_IsString(asked) && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(asked->valuestring, known[i]) == 0)
            version = known[i];

    cJSON *result = cJSON_CreateObject();
    cJSON *caps = cJSON_AddObjectToObject(result, "capabilities");
    cJSON *info = cJSON_AddObjectToObject(result, "serverInfo");
    if (caps == NULL || info == NULL ||
        cJSON_AddStringToObject(result, "protocolVersion", version) == NULL ||
        cJSON_AddObjectToObject(caps, "tools") == NULL ||
        cJSON_AddStringToObject(info, "name", SERVER_NAME) == NULL ||
        cJSON_AddStringToObject(info, "version", SERVER_VERSION) == NULL ||
        cJSON_AddStringToObject(result, "instructions",
                                "A demo server: echo a text, count its lines, words and "
                                "characters, or ask for the current UTC time.") == NULL) {
        cJSON_Delete(result);
        set_oom(err);
        return NULL;
    }
    log_at(LEVEL_INFO, "msg=initialize protocol=%s", version);
    return result;
}

static cJSON *method_tools_list(const cJSON *params, struct rpc_error *err)
{
    cJSON *result = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(result, "tools");
    if (list == NULL)
        goto oom;
    for (size_t i = 0; i < N_TOOLS; i++) {
        cJSON *def = cJSON_Parse(tools[i].definition);
        if (def == NULL)
            goto oom;
        cJSON_AddItemToArray(list, def);
    }
    return result;
oom:
    cJSON_Delete(result);
    set_oom(err);
    return NULL;
}

static cJSON *method_tools_call(const cJSON *params, struct rpc_error *err)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    if (!cJSON_IsString(name)) {
        set_error(err, RPC_INVALID_PARAMS, "invalid params: \"name\" must be a string");
        return NULL;
    }
    if (args != NULL && !cJSON_IsObject(args)) {
        set_error(err, RPC_INVALID_PARAMS, "invalid params: \"arguments\" must be an object");
        return NULL;
    }
    char tok[65];
    for (size_t i = 0; i < N_TOOLS; i++) {
        if (strcmp(name->valuestring, tools[i].name) == 0) {
            log_at(LEVEL_DEBUG, "msg=call tool=%s", tools[i].name);
            /* A missing "arguments" reads as {}: cJSON finds no members in NULL. */
            return tools[i].call(args, err);
        }
    }
    log_at(LEVEL_WARN, "msg=unknown_tool tool=%s", log_token(tok, sizeof(tok), name->valuestring));
    set_error(err, RPC_INVALID_PARAMS, "unknown tool \"%.*s\"", utf8_prefix(name->valuestring, 64),
              name->valuestring);
    return NULL;
}

static cJSON *method_ping(const cJSON *params, struct rpc_error *err)
{
    cJSON *result = cJSON_CreateObject();
    if (result == NULL)
        set_oom(err);
    return result;
}

static const struct method {
    const char *name;
    cJSON *(*call)(const cJSON *params, struct rpc_error *err);
} methods[] = {
    {"initialize", method_initialize},
    {"ping", method_ping},
    {"tools/list", method_tools_list},
    {"tools/call", method_tools_call},
};

/* ---- dispatch ---- */

/* Handles one request; returns the response message to send (NULL only on allocation failure). */
static cJSON *handle_request(const cJSON *id, const char *method, const cJSON *params)
{
    struct rpc_error err = {0};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(method, methods[i].name) == 0) {
            cJSON *result = methods[i].call(params, &err);
            return result != NULL ? result_response(id, result) : error_response(id, &err);
        }
    }
    char tok[65];
    log_at(LEVEL_DEBUG, "msg=unknown_method method=%s", log_token(tok, sizeof(tok), method));
    set_error(&err, RPC_METHOD_NOT_FOUND, "method not found: %.*s", utf8_prefix(method, 64),
              method);
    return error_response(id, &err);
}

/* Handles one input line; returns the response message to send, or NULL when there is none. */
static cJSON *handle_line(const char *line, size_t len)
{
    struct rpc_error err = {0};
    cJSON *reply = NULL;
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (msg == NULL) {
        log_at(LEVEL_WARN, "msg=parse_error bytes=%zu", len);
        set_error(&err, RPC_PARSE_ERROR, "parse error: the line is not JSON");
        return error_response(NULL, &err);
    }
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");

    if (!cJSON_IsObject(msg) || !cJSON_IsString(version) ||
        strcmp(version->valuestring, "2.0") != 0) {
        set_error(&err, RPC_INVALID_REQUEST, "invalid request: expected a JSON-RPC 2.0 object");
        reply = error_response(cJSON_IsString(id) || cJSON_IsNumber(id) ? id : NULL, &err);
    } else if (method == NULL && id != NULL &&
               (cJSON_HasObjectItem(msg, "result") || cJSON_HasObjectItem(msg, "error"))) {
        log_at(LEVEL_DEBUG, "msg=ignored_response"); /* we send no requests, so nothing awaits it */
    } else if (!cJSON_IsString(method)) {
        set_error(&err, RPC_INVALID_REQUEST, "invalid request: \"method\" must be a string");
        reply = error_response(cJSON_IsString(id) || cJSON_IsNumber(id) ? id : NULL, &err);
    } else if (id == NULL) {
        /* Notifications (initialized, cancelled, ...) need no answer; we have nothing to stop. */
        char tok[65];
        log_at(LEVEL_DEBUG, "msg=notification method=%s",
               log_token(tok, sizeof(tok), method->valuestring));
    } else if (!cJSON_IsString(id) && !cJSON_IsNumber(id)) {
        set_error(&err, RPC_INVALID_REQUEST, "invalid request: \"id\" must be a string or number");
        reply = error_response(NULL, &err);
    } else if (params != NULL && !cJSON_IsObject(params)) {
        set_error(&err, RPC_INVALID_PARAMS, "invalid params: \"params\" must be an object");
        reply = error_response(id, &err);
    } else {
        reply = handle_request(id, method->valuestring, params);
    }
    cJSON_Delete(msg);
    return reply;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;

    /* A vanished reader should surface as a write error we can log, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    log_setup();
    log_at(LEVEL_INFO, "msg=start version=" SERVER_VERSION " pid=%ld", (long)getpid());

    while ((n = getline(&line, &cap, stdin)) != -1) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        cJSON *reply = handle_line(line, (size_t)n);
        if (reply == NULL)
            continue;
        int rc = send_message(reply);
        cJSON_Delete(reply);
        if (rc == -1) {
            log_at(LEVEL_ERROR, "msg=stdout_failed error=\"%s\"", strerror(errno));
            status = 1;
            break;
        }
    }
    if (status == 0)
        log_at(LEVEL_INFO, "msg=stop reason=eof");
    free(line);
    return status;
}
