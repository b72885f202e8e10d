/*
 * testserver.c — a stdio MCP server that misbehaves on purpose, for mcpvisor's integration tests.
 *
 * Newline-delimited JSON-RPC 2.0 on stdin/stdout, stdout flushed after every message, logs on
 * stderr. Each tool is a lever for one broker behaviour: slow answers and cancellation, progress,
 * a server-to-client sampling request, crashes, huge and malformed output (`raw_line` writes any
 * bytes, given in hex, as a line of its stdout), stderr floods, related and unrelated
 * notifications, and views of its own environment, fds and argv (so tests can check what the
 * sandbox handed it), and `line_bytes` (the size of the line it was called with). Contract
 * levers: `typed` (a strict inputSchema; `typed_calls`
 * counts the calls that got through), `structured` (an outputSchema and structuredContent),
 * `shape` (malformed CallToolResults), `mutate` and `mutate_add` (the listing changes at run time,
 * announced by notifications/tools/list_changed; capabilities.tools.listChanged is true).
 * Sharing levers, for children that several sessions use: `whoami` (its pid, uid, gid, a random
 * per-process `instance`, its pid namespace, and the principal and progressToken the request
 * carried in params._meta), `remember` and `recall` (a text kept in the process), `hang` (a
 * call that stays pending while other sessions' calls are served), and resource subscriptions
 * (resources/subscribe and resources/unsubscribe; capabilities.resources.subscribe is true):
 * `touch` sends notifications/resources/updated for a subscribed uri, then answers with the
 * number of subscribed uris.
 * Arguments pick modes, several may be combined:
 *   --crash-on-start        exit 2 at once (after any --stderr-on-start lines)
 *   --crash-if-exists PATH  exit 4 at once if PATH exists (a crash loop that ends when the
 *                           file is removed; PATH must be visible inside the sandbox)
 *   --no-init               read stdin until EOF, never answer
 *   --stderr-on-start N     write N stderr lines, then serve normally
 *   --exit-after-init       answer initialize, then exit 0 on the next message
 *   --drift                 start with echo's description changed, as `mutate` changes it
 *   --page-size N           tools/list answers at most N tools a page, with a nextCursor
 *   --unsupported-schema    also list `weird`, whose inputSchema uses unevaluatedProperties
 *   --no-tools              no tools capability; tools/list and tools/call answer -32601
 *   --list-hang             never answer tools/list (other requests are answered)
 *   --list-error            answer tools/list with error -32603 "listing failed"
 *   --list-error-first N    answer the first N tools/list requests with that error
 *   --list-storm            send notifications/tools/list_changed before every tools/list answer
 *   --list-delay MS         sleep MS milliseconds (reading nothing) before the first tools/list
 *                           answer, so requests that arrive meanwhile wait for the listing
 *   --generated N           list N more tools, gen0 …, on the last page, each with a small
 *                           inputSchema; their descriptions carry a counter that every
 *                           listing bumps, so every listing is new (with --list-storm: a storm)
 *   --pattern P             also list match_in (argument s must match P) and match_out (its
 *                           structuredContent.s, the argument echoed, must match P)
 * Any other arguments are ignored (the `argv` tool reports them). This is test equipment: it
 * trusts its input and dies on allocation failure.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#define SERVER_NAME     "testserver"
#define SERVER_VERSION  "1.0.0"
#define PROTOCOL_LATEST "2025-11-25"

#define RPC_PARSE_ERROR      -32700
#define RPC_INVALID_REQUEST  -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS   -32602
#define RPC_INTERNAL_ERROR   -32603
#define RPC_NOT_FOUND        -32002 /* MCP: resource not found */

/* Ceilings on numeric arguments, so a typo in a test cannot hang or exhaust the machine. */
#define MAX_SLOW_MS      600000LL
#define MAX_PROGRESS     100000LL
#define MAX_HUGE_BYTES   (1LL << 30)
#define MAX_STDERR_LINES 10000000LL
#define HUGE_CHUNK       65536
#define MAX_PAGE_SIZE    1000000LL

#define ECHO_DESCRIPTION_CHANGED "Returns the text it is given (changed)."

extern char **environ;

static int server_argc;
static char **server_argv;
static bool exit_after_init;
static bool init_answered;
static unsigned long sample_seq;
static bool no_tools;         /* --no-tools */
static bool list_hang;        /* --list-hang */
static bool list_error;       /* --list-error */
static long long list_errors; /* --list-error-first N: errors left to give */
static bool list_storm;       /* --list-storm */
static long long generated;   /* --generated */
static unsigned long long generation;
static long long page_size;     /* --page-size; 0: one page */
static long long list_delay_ms; /* --list-delay; spent on the first tools/list */
static unsigned long typed_seq; /* calls to `typed` */
static char *remembered;        /* `remember`'s text; NULL: nothing yet */
static char instance[33];       /* hex of the kernel's AT_RANDOM bytes: unique per process */

/* Subscribed resource uris, each once: resources/subscribe adds, resources/unsubscribe removes. */
static char **subs;
static size_t nsubs, subs_cap;

static char *line_buf;
static size_t line_cap;

static void die(const char *what)
{
    fprintf(stderr, "testserver: fatal: %s\n", what);
    exit(1);
}

static void *need(void *p)
{
    if (p == NULL)
        die("out of memory");
    return p;
}

/* Reads one line of any length into line_buf, without its "\n" or "\r\n". -1 on EOF. */
static long read_line(void)
{
    ssize_t n = getline(&line_buf, &line_cap, stdin);
    if (n == -1)
        return -1;
    while (n > 0 && (line_buf[n - 1] == '\n' || line_buf[n - 1] == '\r'))
        line_buf[--n] = '\0';
    return (long)n;
}

static void flush_out(void)
{
    if (fflush(stdout) == EOF)
        die("cannot write stdout");
}

/* Writes msg as one line and frees it. */
static void send_msg(cJSON *msg)
{
    char *text = need(cJSON_PrintUnformatted(msg));
    fputs(text, stdout);
    fputc('\n', stdout);
    flush_out();
    free(text);
    cJSON_Delete(msg);
}

static cJSON *new_msg(void)
{
    cJSON *msg = need(cJSON_CreateObject());
    need(cJSON_AddStringToObject(msg, "jsonrpc", "2.0"));
    return msg;
}

static void add_id(cJSON *msg, const cJSON *id)
{
    cJSON *copy = id != NULL ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
    cJSON_AddItemToObject(msg, "id", need(copy));
}

/* Takes ownership of result. */
static void send_result(const cJSON *id, cJSON *result)
{
    cJSON *msg = new_msg();
    add_id(msg, id);
    cJSON_AddItemToObject(msg, "result", result);
    send_msg(msg);
}

static void send_error(const cJSON *id, int code, const char *message)
{
    cJSON *msg = new_msg();
    add_id(msg, id);
    cJSON *err = need(cJSON_AddObjectToObject(msg, "error"));
    need(cJSON_AddNumberToObject(err, "code", code));
    need(cJSON_AddStringToObject(err, "message", message));
    send_msg(msg);
}

/* Takes ownership of params (may be NULL). */
static void send_notification(const char *method, cJSON *params)
{
    cJSON *msg = new_msg();
    need(cJSON_AddStringToObject(msg, "method", method));
    if (params != NULL)
        cJSON_AddItemToObject(msg, "params", params);
    send_msg(msg);
}

static cJSON *text_result(const char *text)
{
    cJSON *result = need(cJSON_CreateObject());
    cJSON *content = need(cJSON_AddArrayToObject(result, "content"));
    cJSON *item = need(cJSON_CreateObject());
    cJSON_AddItemToArray(content, item);
    need(cJSON_AddStringToObject(item, "type", "text"));
    need(cJSON_AddStringToObject(item, "text", text));
    need(cJSON_AddBoolToObject(result, "isError", 0));
    return result;
}

static void send_text(const cJSON *id, const char *text)
{
    send_result(id, text_result(text));
}

static void send_log_message(const char *data)
{
    cJSON *params = need(cJSON_CreateObject());
    need(cJSON_AddStringToObject(params, "level", "info"));
    need(cJSON_AddStringToObject(params, "data", data));
    send_notification("notifications/message", params);
}

/* Prints a JSON-RPC id for a log line: numbers as numbers, strings without quotes. */
static void print_id(FILE *f, const cJSON *id)
{
    if (cJSON_IsString(id)) {
        fputs(id->valuestring, f);
        return;
    }
    char *text = need(cJSON_PrintUnformatted(id));
    fputs(text, f);
    free(text);
}

/* ---- argument accessors: on failure they answer -32602 and return -1 ---- */

static int arg_string(const cJSON *id, const cJSON *args, const char *name, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    if (!cJSON_IsString(v)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "invalid arguments: \"%s\" must be a string", name);
        send_error(id, RPC_INVALID_PARAMS, msg);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static int arg_number(const cJSON *id, const cJSON *args, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    if (!cJSON_IsNumber(v)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "invalid arguments: \"%s\" must be a number", name);
        send_error(id, RPC_INVALID_PARAMS, msg);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

static int arg_integer(const cJSON *id, const cJSON *args, const char *name, long long max,
                       long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, name);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!cJSON_IsNumber(v) || d < 0 || d > (double)max || d != (double)(long long)d) {
        char msg[128];
        snprintf(msg, sizeof(msg), "invalid arguments: \"%s\" must be an integer in [0, %lld]",
                 name, max);
        send_error(id, RPC_INVALID_PARAMS, msg);
        return -1;
    }
    *out = (long long)d;
    return 0;
}

/* ---- tools: each answers its own request (some send other messages first or after) ---- */

typedef void tool_fn(const cJSON *id, const cJSON *params, const cJSON *args);

/* The table is mutable: `mutate` rewrites a description, `mutate_add` and modes unhide tools. */
struct tool {
    const char *name;
    const char *description;
    const char *input_schema; /* JSON text */
    tool_fn *call;
    const char *output_schema; /* JSON text, or NULL */
    bool hidden;               /* neither listed nor callable */
};

static struct tool *find_tool(const char *name);
static void handle_notification(const char *method, const cJSON *params);

static void tool_echo(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *text;
    if (arg_string(id, args, "text", &text) == 0)
        send_text(id, text);
}

static void tool_add(const cJSON *id, const cJSON *params, const cJSON *args)
{
    double a, b;
    if (arg_number(id, args, "a", &a) == -1 || arg_number(id, args, "b", &b) == -1)
        return;
    /* Shortest form that reads back exactly, as cJSON prints numbers: 2+3 is "5". */
    char text[64];
    double sum = a + b;
    snprintf(text, sizeof(text), "%.15g", sum);
    if (strtod(text, NULL) != sum)
        snprintf(text, sizeof(text), "%.17g", sum);
    send_text(id, text);
}

static void sleep_ms(long long ms)
{
    struct timespec left = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) == -1 && errno == EINTR)
        ;
}

static void tool_slow(const cJSON *id, const cJSON *params, const cJSON *args)
{
    long long ms;
    if (arg_integer(id, args, "ms", MAX_SLOW_MS, &ms) == -1)
        return;
    /* Tests wait for this line to know the call reached the child. */
    fprintf(stderr, "slow: sleeping %lld ms\n", ms);
    sleep_ms(ms);
    char text[64];
    snprintf(text, sizeof(text), "slept %lld", ms);
    send_text(id, text);
}

static void tool_progress(const cJSON *id, const cJSON *params, const cJSON *args)
{
    long long steps;
    if (arg_integer(id, args, "steps", MAX_PROGRESS, &steps) == -1)
        return;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(meta, "progressToken");
    if (cJSON_IsString(token) || cJSON_IsNumber(token)) {
        for (long long i = 1; i <= steps; i++) {
            cJSON *p = need(cJSON_CreateObject());
            cJSON_AddItemToObject(p, "progressToken", need(cJSON_Duplicate(token, 1)));
            need(cJSON_AddNumberToObject(p, "progress", (double)i));
            need(cJSON_AddNumberToObject(p, "total", (double)steps));
            send_notification("notifications/progress", p);
        }
    }
    char text[64];
    snprintf(text, sizeof(text), "done %lld", steps);
    send_text(id, text);
}

/*
 * Sends sampling/createMessage and reads stdin until its response arrives. Meanwhile pings are
 * answered, other requests get "busy", notifications are handled as usual; EOF exits 0.
 * Returns the response message (owned by the caller).
 */
static cJSON *await_response(const char *want_id)
{
    for (;;) {
        long n = read_line();
        if (n == -1)
            exit(0);
        if (n == 0)
            continue;
        cJSON *msg = cJSON_ParseWithLength(line_buf, (size_t)n);
        if (msg == NULL) {
            send_error(NULL, RPC_PARSE_ERROR, "Parse error");
            continue;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
        if (cJSON_IsString(method)) {
            if (id == NULL)
                handle_notification(method->valuestring,
                                    cJSON_GetObjectItemCaseSensitive(msg, "params"));
            else if (strcmp(method->valuestring, "ping") == 0)
                send_result(id, need(cJSON_CreateObject()));
            else
                send_error(id, RPC_INTERNAL_ERROR, "busy");
        } else if (cJSON_IsString(id) && strcmp(id->valuestring, want_id) == 0) {
            return msg;
        } else {
            fprintf(stderr, "testserver: ignoring stray message while sampling\n");
        }
        cJSON_Delete(msg);
    }
}

static void tool_sample(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *prompt;
    if (arg_string(id, args, "prompt", &prompt) == -1)
        return;
    char req_id[32];
    snprintf(req_id, sizeof(req_id), "srv-%lu", ++sample_seq);

    cJSON *req = new_msg();
    need(cJSON_AddStringToObject(req, "id", req_id));
    need(cJSON_AddStringToObject(req, "method", "sampling/createMessage"));
    cJSON *p = need(cJSON_AddObjectToObject(req, "params"));
    cJSON *messages = need(cJSON_AddArrayToObject(p, "messages"));
    cJSON *m = need(cJSON_CreateObject());
    cJSON_AddItemToArray(messages, m);
    need(cJSON_AddStringToObject(m, "role", "user"));
    cJSON *content = need(cJSON_AddObjectToObject(m, "content"));
    need(cJSON_AddStringToObject(content, "type", "text"));
    need(cJSON_AddStringToObject(content, "text", prompt));
    need(cJSON_AddNumberToObject(p, "maxTokens", 100));
    send_msg(req);

    cJSON *resp = await_response(req_id);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp, "error");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(resp, "result");
    const char *prefix = "sampled: ", *text = NULL;
    if (err != NULL) {
        prefix = "sample error: ";
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(err, "message");
        text = cJSON_IsString(message) ? message->valuestring : "(no message)";
    } else {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(result, "content");
        if (cJSON_IsArray(c)) /* 2025-11-25 allows an array of content blocks */
            c = cJSON_GetArrayItem(c, 0);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text");
        if (cJSON_IsString(t)) {
            text = t->valuestring;
        } else {
            prefix = "sample error: ";
            text = "response has no text content";
        }
    }
    size_t len = strlen(prefix) + strlen(text) + 1;
    char *out = need(malloc(len));
    snprintf(out, len, "%s%s", prefix, text);
    send_text(id, out);
    free(out);
    cJSON_Delete(resp);
}

static void tool_crash(const cJSON *id, const cJSON *params, const cJSON *args)
{
    exit(3);
}

/* Leaves the call pending for good while the process goes on serving other requests. */
static void tool_hang(const cJSON *id, const cJSON *params, const cJSON *args)
{
    fputs("hang: not answering\n", stderr);
}

/* Streams the response without building it in memory: the text can be a gigabyte. */
static void tool_huge(const cJSON *id, const cJSON *params, const cJSON *args)
{
    long long bytes;
    if (arg_integer(id, args, "bytes", MAX_HUGE_BYTES, &bytes) == -1)
        return;
    static char chunk[HUGE_CHUNK];
    memset(chunk, 'x', sizeof(chunk));
    char *id_text = need(cJSON_PrintUnformatted(id));
    printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"",
           id_text);
    free(id_text);
    for (long long left = bytes; left > 0;) {
        size_t n = left > HUGE_CHUNK ? HUGE_CHUNK : (size_t)left;
        if (fwrite(chunk, 1, n, stdout) != n)
            die("cannot write stdout");
        left -= (long long)n;
    }
    fputs("\"}],\"isError\":false}}\n", stdout);
    flush_out();
}

static void tool_malformed(const cJSON *id, const cJSON *params, const cJSON *args)
{
    fputs("this is not json {\n", stdout);
    flush_out();
    send_text(id, "after malformed");
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Writes the bytes `hex` spells as one line, exactly (they may be anything but a line break, and
 * need not be JSON); with `answer`, they follow {"jsonrpc":"2.0","id":<this call's id>, and are
 * the call's only answer, else the call is then answered "after raw_line". */
static void tool_raw_line(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *hex;
    if (arg_string(id, args, "hex", &hex) == -1)
        return;
    size_t n = strlen(hex);
    char *bytes = need(malloc(n / 2 + 1));
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(hex[i]), lo = i + 1 < n ? hex_digit(hex[i + 1]) : -1;
        if (hi < 0 || lo < 0) {
            free(bytes);
            send_error(id, RPC_INVALID_PARAMS, "invalid arguments: \"hex\" must be hex digits");
            return;
        }
        bytes[i / 2] = (char)(hi << 4 | lo);
    }
    bool answer = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "answer"));
    if (answer) {
        char *id_text = need(cJSON_PrintUnformatted(id));
        printf("{\"jsonrpc\":\"2.0\",\"id\":%s,", id_text);
        free(id_text);
    }
    if (fwrite(bytes, 1, n / 2, stdout) != n / 2 || fputc('\n', stdout) == EOF)
        die("cannot write stdout");
    free(bytes);
    flush_out();
    if (!answer)
        send_text(id, "after raw_line");
}

static void tool_stderr_flood(const cJSON *id, const cJSON *params, const cJSON *args)
{
    long long lines;
    if (arg_integer(id, args, "lines", MAX_STDERR_LINES, &lines) == -1)
        return;
    for (long long i = 1; i <= lines; i++)
        fprintf(stderr, "noise %lld\n", i);
    char text[64];
    snprintf(text, sizeof(text), "flooded %lld", lines);
    send_text(id, text);
}

/* Takes ownership of value; answers with its JSON text. */
static void send_json_text(const cJSON *id, cJSON *value)
{
    char *text = need(cJSON_PrintUnformatted(value));
    send_text(id, text);
    free(text);
    cJSON_Delete(value);
}

static void tool_env(const cJSON *id, const cJSON *params, const cJSON *args)
{
    cJSON *env = need(cJSON_CreateObject());
    for (char **e = environ; *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
        char *name = need(strndup(*e, name_len));
        need(cJSON_AddStringToObject(env, name, eq != NULL ? eq + 1 : ""));
        free(name);
    }
    send_json_text(id, env);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void tool_fds(const cJSON *id, const cJSON *params, const cJSON *args)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        send_error(id, RPC_INTERNAL_ERROR, "cannot open /proc/self/fd");
        return;
    }
    int self = dirfd(dir);
    int *fds = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        char *end;
        errno = 0;
        long fd = strtol(de->d_name, &end, 10);
        if (de->d_name[0] == '.' || *end != '\0' || errno != 0 || fd < 0 || fd > INT_MAX ||
            fd == self)
            continue;
        if (n == cap) {
            cap = cap != 0 ? cap * 2 : 16;
            fds = need(realloc(fds, cap * sizeof(*fds)));
        }
        fds[n++] = (int)fd;
    }
    closedir(dir);
    qsort(fds, n, sizeof(*fds), cmp_int);
    cJSON *arr = need(cJSON_CreateArray());
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, need(cJSON_CreateNumber(fds[i])));
    free(fds);
    send_json_text(id, arr);
}

static void tool_argv(const cJSON *id, const cJSON *params, const cJSON *args)
{
    cJSON *arr = need(cJSON_CreateArray());
    for (int i = 0; i < server_argc; i++)
        cJSON_AddItemToArray(arr, need(cJSON_CreateString(server_argv[i])));
    send_json_text(id, arr);
}

static void tool_notify_after(const cJSON *id, const cJSON *params, const cJSON *args)
{
    send_text(id, "ok");
    send_log_message("unrelated");
}

static void tool_log(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *text;
    if (arg_string(id, args, "text", &text) == -1)
        return;
    send_log_message(text);
    send_text(id, "logged");
}

/* Never checks its arguments: a test reads typed_calls to prove invalid ones were stopped. */
static void tool_typed(const cJSON *id, const cJSON *params, const cJSON *args)
{
    typed_seq++;
    send_json_text(id, need(args != NULL ? cJSON_Duplicate(args, 1) : cJSON_CreateObject()));
}

/* Bytes of the request line being handled (what the broker forwarded). */
static size_t cur_line_bytes;

static void tool_line_bytes(const cJSON *id, const cJSON *params, const cJSON *args)
{
    char text[32];
    snprintf(text, sizeof(text), "%zu", cur_line_bytes);
    send_text(id, text);
}

static void tool_typed_calls(const cJSON *id, const cJSON *params, const cJSON *args)
{
    char text[32];
    snprintf(text, sizeof(text), "%lu", typed_seq);
    send_text(id, text);
}

/* n goes back unchecked, so a non-integer n breaks the tool's own outputSchema. */
static void tool_structured(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(args, "n");
    if (n == NULL) {
        send_error(id, RPC_INVALID_PARAMS, "invalid arguments: \"n\" is required");
        return;
    }
    char *text = need(cJSON_PrintUnformatted(n));
    cJSON *result = text_result(text);
    free(text);
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(args, "omit"))) {
        cJSON *sc = need(cJSON_AddObjectToObject(result, "structuredContent"));
        cJSON_AddItemToObject(sc, "n", need(cJSON_Duplicate(n, 1)));
    }
    send_result(id, result);
}

/* match_in / match_out: answer with s as text and as structuredContent.s. */
static void tool_match(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(args, "s");
    if (!cJSON_IsString(s)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid arguments: \"s\" must be a string");
        return;
    }
    cJSON *result = text_result(s->valuestring);
    cJSON *sc = need(cJSON_AddObjectToObject(result, "structuredContent"));
    need(cJSON_AddStringToObject(sc, "s", s->valuestring));
    send_result(id, result);
}

/* {"type":"object","properties":{"s":{"type":"string"[,"pattern":P]}},"required":["s"]} */
static char *string_schema(const char *pattern)
{
    cJSON *o = need(cJSON_CreateObject());
    need(cJSON_AddStringToObject(o, "type", "object"));
    cJSON *props = need(cJSON_AddObjectToObject(o, "properties"));
    cJSON *s = need(cJSON_AddObjectToObject(props, "s"));
    need(cJSON_AddStringToObject(s, "type", "string"));
    if (pattern != NULL)
        need(cJSON_AddStringToObject(s, "pattern", pattern));
    cJSON *req = need(cJSON_AddArrayToObject(o, "required"));
    cJSON_AddItemToArray(req, need(cJSON_CreateString("s")));
    char *text = need(cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    return text;
}

static void tool_shape(const cJSON *id, const cJSON *params, const cJSON *args)
{
    static const struct {
        const char *kind;
        const char *result; /* JSON text */
    } shapes[] = {
        {"no_content", "{}"},
        {"content_not_array", "{\"content\":\"x\"}"},
        {"content_item_no_type", "{\"content\":[{\"text\":\"x\"}]}"},
        {"result_not_object", "\"x\""},
        {"is_error_not_bool", "{\"content\":[],\"isError\":\"yes\"}"},
        {"structured_not_object", "{\"content\":[],\"structuredContent\":[1]}"},
        {"ok", "{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}"},
        {"tool_error", "{\"content\":[{\"type\":\"text\",\"text\":\"failed\"}],\"isError\":true}"},
    };
    const char *kind;
    if (arg_string(id, args, "kind", &kind) == -1)
        return;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (strcmp(kind, shapes[i].kind) == 0) {
            send_result(id, need(cJSON_Parse(shapes[i].result)));
            return;
        }
    }
    cJSON *msg = new_msg();
    add_id(msg, id);
    if (strcmp(kind, "error_no_code") == 0) {
        cJSON_AddItemToObject(msg, "error", need(cJSON_Parse("{\"message\":\"x\"}")));
    } else if (strcmp(kind, "both") == 0) {
        cJSON_AddItemToObject(
            msg, "result",
            need(cJSON_Parse("{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}")));
        cJSON_AddItemToObject(msg, "error",
                              need(cJSON_Parse("{\"code\":-32603,\"message\":\"x\"}")));
    } else {
        cJSON_Delete(msg);
        send_error(id, RPC_INVALID_PARAMS, "invalid arguments: unknown \"kind\"");
        return;
    }
    send_msg(msg);
}

static void tool_mutate(const cJSON *id, const cJSON *params, const cJSON *args)
{
    find_tool("echo")->description = ECHO_DESCRIPTION_CHANGED;
    send_text(id, "ok");
    send_notification("notifications/tools/list_changed", NULL);
}

static void tool_mutate_add(const cJSON *id, const cJSON *params, const cJSON *args)
{
    find_tool("added")->hidden = false;
    send_text(id, "ok");
    send_notification("notifications/tools/list_changed", NULL);
}

static void tool_weird(const cJSON *id, const cJSON *params, const cJSON *args)
{
    send_text(id, "weird");
}

static void tool_added(const cJSON *id, const cJSON *params, const cJSON *args)
{
    send_text(id, "added");
}

/* A copy of params._meta[key], or null when the request did not carry it. */
static cJSON *meta_copy(const cJSON *params, const char *key)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(params, "_meta");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return need(v != NULL ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
}

static void tool_whoami(const cJSON *id, const cJSON *params, const cJSON *args)
{
    cJSON *o = need(cJSON_CreateObject());
    need(cJSON_AddNumberToObject(o, "pid", (double)getpid()));
    need(cJSON_AddNumberToObject(o, "uid", (double)getuid()));
    need(cJSON_AddNumberToObject(o, "gid", (double)getgid()));
    need(cJSON_AddStringToObject(o, "instance", instance));
    /* "pid:[inode]": the same text the host reads at /proc/<host pid>/ns/pid */
    char ns[64];
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    ns[n > 0 ? n : 0] = '\0';
    cJSON_AddItemToObject(o, "pidns", need(n > 0 ? cJSON_CreateString(ns) : cJSON_CreateNull()));
    cJSON_AddItemToObject(o, "principal", meta_copy(params, "io.mcpvisor/principal"));
    cJSON_AddItemToObject(o, "progressToken", meta_copy(params, "progressToken"));
    send_json_text(id, o);
}

static void tool_remember(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *text;
    if (arg_string(id, args, "text", &text) == -1)
        return;
    free(remembered);
    remembered = need(strdup(text));
    send_text(id, "remembered");
}

static void tool_recall(const cJSON *id, const cJSON *params, const cJSON *args)
{
    send_text(id, remembered != NULL ? remembered : "");
}

static bool subscribed(const char *uri)
{
    for (size_t i = 0; i < nsubs; i++)
        if (strcmp(subs[i], uri) == 0)
            return true;
    return false;
}

static void tool_touch(const cJSON *id, const cJSON *params, const cJSON *args)
{
    const char *uri;
    if (arg_string(id, args, "uri", &uri) == -1)
        return;
    if (subscribed(uri)) {
        cJSON *p = need(cJSON_CreateObject());
        need(cJSON_AddStringToObject(p, "uri", uri));
        send_notification("notifications/resources/updated", p);
    }
    char text[32];
    snprintf(text, sizeof(text), "%zu", nsubs);
    send_text(id, text);
}

static struct tool tools[] = {
    {"echo", "Returns the text it is given.",
     "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]"
     "}",
     tool_echo, NULL, false},
    {"add", "Adds two numbers.",
     "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"b\":{\"type\":\"number\"}}"
     ","
     "\"required\":[\"a\",\"b\"]}",
     tool_add, NULL, false},
    {"slow", "Sleeps ms milliseconds (reading nothing meanwhile), then answers.",
     "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\",\"minimum\":0}},"
     "\"required\":[\"ms\"]}",
     tool_slow, NULL, false},
    {"progress", "Sends steps progress notifications when given a progressToken, then answers.",
     "{\"type\":\"object\",\"properties\":{\"steps\":{\"type\":\"integer\",\"minimum\":0}},"
     "\"required\":[\"steps\"]}",
     tool_progress, NULL, false},
    {"sample", "Asks the client for a sampling/createMessage and answers with its text.",
     "{\"type\":\"object\",\"properties\":{\"prompt\":{\"type\":\"string\"}},"
     "\"required\":[\"prompt\"]}",
     tool_sample, NULL, false},
    {"crash", "Exits with status 3 without answering.", "{\"type\":\"object\",\"properties\":{}}",
     tool_crash, NULL, false},
    {"hang", "Never answers this call.", "{\"type\":\"object\",\"properties\":{}}", tool_hang, NULL,
     false},
    {"huge", "Answers with a text of bytes 'x' characters.",
     "{\"type\":\"object\",\"properties\":{\"bytes\":{\"type\":\"integer\",\"minimum\":0}},"
     "\"required\":[\"bytes\"]}",
     tool_huge, NULL, false},
    {"malformed", "Writes a line that is not JSON, then answers.",
     "{\"type\":\"object\",\"properties\":{}}", tool_malformed, NULL, false},
    {"raw_line",
     "Writes the line hex spells, byte for byte, then answers (or, with answer, it "
     "is the answer's tail after the id).",
     "{\"type\":\"object\",\"properties\":{\"hex\":{\"type\":\"string\"},"
     "\"answer\":{\"type\":\"boolean\"}},\"required\":[\"hex\"]}",
     tool_raw_line, NULL, false},
    {"stderr_flood", "Writes lines lines to stderr, then answers.",
     "{\"type\":\"object\",\"properties\":{\"lines\":{\"type\":\"integer\",\"minimum\":0}},"
     "\"required\":[\"lines\"]}",
     tool_stderr_flood, NULL, false},
    {"env", "Answers with its environment as a JSON object.",
     "{\"type\":\"object\",\"properties\":{}}", tool_env, NULL, false},
    {"fds", "Answers with its open file descriptors as a JSON array.",
     "{\"type\":\"object\",\"properties\":{}}", tool_fds, NULL, false},
    {"argv", "Answers with its argv as a JSON array.", "{\"type\":\"object\",\"properties\":{}}",
     tool_argv, NULL, false},
    {"notify_after", "Answers, then sends an unrelated notifications/message.",
     "{\"type\":\"object\",\"properties\":{}}", tool_notify_after, NULL, false},
    {"log", "Sends notifications/message with the text, then answers.",
     "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]"
     "}",
     tool_log, NULL, false},
    {"typed", "Answers with the arguments it received as JSON text, and counts its calls.",
     "{\"type\":\"object\",\"properties\":{\"count\":{\"type\":\"integer\",\"minimum\":1},"
     "\"name\":{\"type\":\"string\",\"maxLength\":5}},\"required\":[\"count\"],"
     "\"additionalProperties\":false}",
     tool_typed, NULL, false},
    {"typed_calls", "Answers with the number of calls to typed so far.",
     "{\"type\":\"object\",\"properties\":{}}", tool_typed_calls, NULL, false},
    {"line_bytes", "Answers with the byte length of the request line that called it.",
     "{\"type\":\"object\"}", tool_line_bytes, NULL, false},
    {"structured", "Answers with n as text and as structuredContent (left out when omit is true).",
     "{\"type\":\"object\",\"properties\":{\"n\":{}},\"required\":[\"n\"]}", tool_structured,
     "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"],"
     "\"additionalProperties\":false}",
     false},
    {"shape", "Answers with a malformed CallToolResult of the given kind (or a valid one: ok).",
     "{\"type\":\"object\",\"properties\":{\"kind\":{\"type\":\"string\"}},"
     "\"required\":[\"kind\"]}",
     tool_shape, NULL, false},
    {"mutate", "Changes echo's description, answers, then sends notifications/tools/list_changed.",
     "{\"type\":\"object\",\"properties\":{}}", tool_mutate, NULL, false},
    {"mutate_add", "Adds the tool added, answers, then sends notifications/tools/list_changed.",
     "{\"type\":\"object\",\"properties\":{}}", tool_mutate_add, NULL, false},
    {"weird", "Has an inputSchema keyword mcpvisor does not support (--unsupported-schema).",
     "{\"type\":\"object\",\"unevaluatedProperties\":false}", tool_weird, NULL, true},
    {"added", "Added at run time.", "{\"type\":\"object\"}", tool_added, NULL, true},
    {"whoami", "Answers with its pid, uid, gid, instance, pidns and the request's _meta.",
     "{\"type\":\"object\",\"properties\":{}}", tool_whoami, NULL, false},
    {"remember", "Keeps text in the process, for recall.",
     "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]"
     "}",
     tool_remember, NULL, false},
    {"recall", "Answers with the text remember kept.", "{\"type\":\"object\",\"properties\":{}}",
     tool_recall, NULL, false},
    {"touch", "Sends resources/updated for uri if subscribed; answers the subscription count.",
     "{\"type\":\"object\",\"properties\":{\"uri\":{\"type\":\"string\"}},\"required\":[\"uri\"]}",
     tool_touch, NULL, false},
    {"match_in", "Echoes s, which its inputSchema constrains with --pattern.", NULL, tool_match,
     NULL, true},
    {"match_out",
     "Echoes s as structuredContent.s, which its outputSchema constrains with "
     "--pattern.",
     NULL, tool_match, NULL, true},
};

#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

static struct tool *find_tool(const char *name)
{
    for (size_t i = 0; i < N_TOOLS; i++)
        if (strcmp(tools[i].name, name) == 0)
            return &tools[i];
    die("no such tool in the table");
    return NULL;
}

/* ---- methods ---- */

static void method_initialize(const cJSON *id, const cJSON *params)
{
    static const char *const known[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"};
    const cJSON *asked = cJSON_GetObjectItemCaseSensitive(params, "protocolVersion");
    const char *version = PROTOCOL_LATEST;
    for (size_t i = 0; cJSON_IsString(asked) && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(asked->valuestring, known[i]) == 0)
            version = known[i];

    cJSON *result = need(cJSON_CreateObject());
    need(cJSON_AddStringToObject(result, "protocolVersion", version));
    cJSON *caps = need(cJSON_AddObjectToObject(result, "capabilities"));
    if (!no_tools) {
        cJSON *tools_cap = need(cJSON_AddObjectToObject(caps, "tools"));
        need(cJSON_AddBoolToObject(tools_cap, "listChanged", 1));
    }
    cJSON *resources_cap = need(cJSON_AddObjectToObject(caps, "resources"));
    need(cJSON_AddBoolToObject(resources_cap, "subscribe", 1));
    need(cJSON_AddObjectToObject(caps, "prompts"));
    need(cJSON_AddObjectToObject(caps, "logging"));
    cJSON *info = need(cJSON_AddObjectToObject(result, "serverInfo"));
    need(cJSON_AddStringToObject(info, "name", SERVER_NAME));
    need(cJSON_AddStringToObject(info, "version", SERVER_VERSION));
    send_result(id, result);
    init_answered = true;
}

/*
 * Pages are numbered from 1; the cursor of page k > 1 is "pk". Without --page-size everything is
 * on page 1, so any cursor is unknown.
 */
static void method_tools_list(const cJSON *id, const cJSON *params)
{
    if (list_delay_ms > 0) {
        sleep_ms(list_delay_ms);
        list_delay_ms = 0;
    }
    size_t shown = 0;
    for (size_t i = 0; i < N_TOOLS; i++)
        shown += !tools[i].hidden;
    size_t size = page_size > 0 ? (size_t)page_size : (shown > 0 ? shown : 1);
    size_t pages = shown > 0 ? (shown + size - 1) / size : 1;

    size_t page = 1;
    const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(params, "cursor");
    if (cursor != NULL && !cJSON_IsNull(cursor)) {
        char *end = NULL;
        unsigned long long k = 0;
        if (cJSON_IsString(cursor) && cursor->valuestring[0] == 'p' &&
            cursor->valuestring[1] >= '1' && cursor->valuestring[1] <= '9') {
            errno = 0;
            k = strtoull(cursor->valuestring + 1, &end, 10);
        }
        if (end == NULL || *end != '\0' || errno != 0 || k < 2 || k > pages) {
            send_error(id, RPC_INVALID_PARAMS, "invalid params: unknown cursor");
            return;
        }
        page = (size_t)k;
    }

    cJSON *result = need(cJSON_CreateObject());
    cJSON *list = need(cJSON_AddArrayToObject(result, "tools"));
    size_t first = (page - 1) * size, seen = 0;
    for (size_t i = 0; i < N_TOOLS; i++) {
        if (tools[i].hidden)
            continue;
        if (seen++ < first || seen > first + size)
            continue;
        cJSON *t = need(cJSON_CreateObject());
        cJSON_AddItemToArray(list, t);
        need(cJSON_AddStringToObject(t, "name", tools[i].name));
        need(cJSON_AddStringToObject(t, "description", tools[i].description));
        cJSON_AddItemToObject(t, "inputSchema", need(cJSON_Parse(tools[i].input_schema)));
        if (tools[i].output_schema != NULL)
            cJSON_AddItemToObject(t, "outputSchema", need(cJSON_Parse(tools[i].output_schema)));
    }
    if (generated > 0 && page == pages) {
        generation++;
        for (long long g = 0; g < generated; g++) {
            char name[32], desc[96];
            snprintf(name, sizeof(name), "gen%lld", g);
            snprintf(desc, sizeof(desc), "Generated tool, listing %llu.", generation);
            cJSON *t = need(cJSON_CreateObject());
            cJSON_AddItemToArray(list, t);
            need(cJSON_AddStringToObject(t, "name", name));
            need(cJSON_AddStringToObject(t, "description", desc));
            cJSON_AddItemToObject(
                t, "inputSchema",
                need(cJSON_Parse("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
                                 "\"string\",\"maxLength\":64},\"b\":{\"type\":\"integer\","
                                 "\"minimum\":0},\"c\":{\"type\":\"array\",\"items\":{"
                                 "\"type\":\"string\"}}},\"required\":[\"a\"]}")));
        }
    }
    if (page < pages) {
        char next[32];
        snprintf(next, sizeof(next), "p%zu", page + 1);
        need(cJSON_AddStringToObject(result, "nextCursor", next));
    }
    send_result(id, result);
}

static void method_tools_call(const cJSON *id, const cJSON *params)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    if (!cJSON_IsString(name)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid params: \"name\" must be a string");
        return;
    }
    if (args != NULL && !cJSON_IsObject(args)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid params: \"arguments\" must be an object");
        return;
    }
    for (size_t i = 0; i < N_TOOLS; i++) {
        if (!tools[i].hidden && strcmp(name->valuestring, tools[i].name) == 0) {
            tools[i].call(id, params, args);
            return;
        }
    }
    send_error(id, RPC_INVALID_PARAMS, "unknown tool");
}

static void method_resources_list(const cJSON *id)
{
    cJSON *result = need(cJSON_CreateObject());
    cJSON *list = need(cJSON_AddArrayToObject(result, "resources"));
    cJSON *r = need(cJSON_CreateObject());
    cJSON_AddItemToArray(list, r);
    need(cJSON_AddStringToObject(r, "uri", "test://static"));
    need(cJSON_AddStringToObject(r, "name", "static"));
    need(cJSON_AddStringToObject(r, "mimeType", "text/plain"));
    send_result(id, result);
}

static void method_resources_read(const cJSON *id, const cJSON *params)
{
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(params, "uri");
    if (!cJSON_IsString(uri)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid params: \"uri\" must be a string");
        return;
    }
    if (strcmp(uri->valuestring, "test://static") != 0) {
        send_error(id, RPC_NOT_FOUND, "Resource not found");
        return;
    }
    cJSON *result = need(cJSON_CreateObject());
    cJSON *list = need(cJSON_AddArrayToObject(result, "contents"));
    cJSON *c = need(cJSON_CreateObject());
    cJSON_AddItemToArray(list, c);
    need(cJSON_AddStringToObject(c, "uri", "test://static"));
    need(cJSON_AddStringToObject(c, "mimeType", "text/plain"));
    need(cJSON_AddStringToObject(c, "text", "static resource"));
    send_result(id, result);
}

/* resources/subscribe and resources/unsubscribe: any uri; subscribing twice is once. */
static void method_subscription(const cJSON *id, const cJSON *params, bool subscribe)
{
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(params, "uri");
    if (!cJSON_IsString(uri)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid params: \"uri\" must be a string");
        return;
    }
    if (subscribe && !subscribed(uri->valuestring)) {
        if (nsubs == subs_cap) {
            subs_cap = subs_cap != 0 ? subs_cap * 2 : 8;
            subs = need(realloc(subs, subs_cap * sizeof(*subs)));
        }
        subs[nsubs++] = need(strdup(uri->valuestring));
    }
    for (size_t i = 0; !subscribe && i < nsubs; i++) {
        if (strcmp(subs[i], uri->valuestring) == 0) {
            free(subs[i]);
            subs[i] = subs[--nsubs];
            break;
        }
    }
    send_result(id, need(cJSON_CreateObject()));
}

static void method_prompts_list(const cJSON *id)
{
    cJSON *result = need(cJSON_CreateObject());
    cJSON *list = need(cJSON_AddArrayToObject(result, "prompts"));
    cJSON *p = need(cJSON_CreateObject());
    cJSON_AddItemToArray(list, p);
    need(cJSON_AddStringToObject(p, "name", "greet"));
    need(cJSON_AddStringToObject(p, "description", "Greets someone by name."));
    cJSON *args = need(cJSON_AddArrayToObject(p, "arguments"));
    cJSON *a = need(cJSON_CreateObject());
    cJSON_AddItemToArray(args, a);
    need(cJSON_AddStringToObject(a, "name", "name"));
    need(cJSON_AddStringToObject(a, "description", "Who to greet."));
    need(cJSON_AddBoolToObject(a, "required", 1));
    send_result(id, result);
}

static void method_prompts_get(const cJSON *id, const cJSON *params)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(params, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(args, "name");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, "greet") != 0) {
        send_error(id, RPC_INVALID_PARAMS, "unknown prompt");
        return;
    }
    if (!cJSON_IsString(who)) {
        send_error(id, RPC_INVALID_PARAMS, "invalid params: argument \"name\" is required");
        return;
    }
    size_t len = strlen(who->valuestring) + sizeof("Hello, !");
    char *text = need(malloc(len));
    snprintf(text, len, "Hello, %s!", who->valuestring);

    cJSON *result = need(cJSON_CreateObject());
    need(cJSON_AddStringToObject(result, "description", "A greeting"));
    cJSON *messages = need(cJSON_AddArrayToObject(result, "messages"));
    cJSON *m = need(cJSON_CreateObject());
    cJSON_AddItemToArray(messages, m);
    need(cJSON_AddStringToObject(m, "role", "user"));
    cJSON *content = need(cJSON_AddObjectToObject(m, "content"));
    need(cJSON_AddStringToObject(content, "type", "text"));
    need(cJSON_AddStringToObject(content, "text", text));
    free(text);
    send_result(id, result);
}

static void handle_notification(const char *method, const cJSON *params)
{
    if (strcmp(method, "notifications/cancelled") == 0) {
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(params, "requestId");
        fputs("cancelled requestId=", stderr);
        if (rid != NULL)
            print_id(stderr, rid);
        fputc('\n', stderr);
    }
    /* notifications/initialized and anything else: nothing to do. */
}

static void handle_request(const cJSON *id, const char *method, const cJSON *params)
{
    if (strcmp(method, "initialize") == 0)
        method_initialize(id, params);
    else if (strcmp(method, "ping") == 0 || strcmp(method, "logging/setLevel") == 0)
        send_result(id, need(cJSON_CreateObject()));
    else if (no_tools && strncmp(method, "tools/", 6) == 0)
        send_error(id, RPC_METHOD_NOT_FOUND, "Method not found");
    else if (strcmp(method, "tools/list") == 0 && list_hang)
        fprintf(stderr, "testserver: not answering tools/list\n");
    else if (strcmp(method, "tools/list") == 0 && (list_error || list_errors > 0)) {
        if (list_errors > 0)
            list_errors--;
        send_error(id, RPC_INTERNAL_ERROR, "listing failed");
    } else if (strcmp(method, "tools/list") == 0) {
        if (list_storm)
            send_notification("notifications/tools/list_changed", NULL);
        method_tools_list(id, params);
    } else if (strcmp(method, "tools/call") == 0)
        method_tools_call(id, params);
    else if (strcmp(method, "resources/list") == 0)
        method_resources_list(id);
    else if (strcmp(method, "resources/templates/list") == 0)
        send_result(id, need(cJSON_Parse("{\"resourceTemplates\":[]}")));
    else if (strcmp(method, "resources/read") == 0)
        method_resources_read(id, params);
    else if (strcmp(method, "resources/subscribe") == 0)
        method_subscription(id, params, true);
    else if (strcmp(method, "resources/unsubscribe") == 0)
        method_subscription(id, params, false);
    else if (strcmp(method, "prompts/list") == 0)
        method_prompts_list(id);
    else if (strcmp(method, "prompts/get") == 0)
        method_prompts_get(id, params);
    else
        send_error(id, RPC_METHOD_NOT_FOUND, "Method not found");
}

static void handle_line(const char *line, size_t len)
{
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (msg == NULL) {
        send_error(NULL, RPC_PARSE_ERROR, "Parse error");
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    if (!cJSON_IsObject(msg)) {
        send_error(NULL, RPC_INVALID_REQUEST, "Invalid Request");
    } else if (cJSON_IsString(method)) {
        if (id == NULL)
            handle_notification(method->valuestring, params);
        else
            handle_request(id, method->valuestring, params);
    } else if (id != NULL &&
               (cJSON_HasObjectItem(msg, "result") || cJSON_HasObjectItem(msg, "error"))) {
        fprintf(stderr, "testserver: ignoring response to no request\n");
    } else {
        send_error(id, RPC_INVALID_REQUEST, "Invalid Request");
    }
    cJSON_Delete(msg);
}

/* A mode's count argument, or death. */
static long long count_arg(int argc, char **argv, int i, long long min, long long max)
{
    char *end;
    errno = 0;
    long long n = i + 1 < argc ? strtoll(argv[i + 1], &end, 10) : -1;
    if (i + 1 >= argc || *end != '\0' || errno != 0 || n < min || n > max) {
        fprintf(stderr, "testserver: fatal: %s needs a count in [%lld, %lld]\n", argv[i], min, max);
        exit(1);
    }
    return n;
}

int main(int argc, char **argv)
{
    server_argc = argc;
    server_argv = argv;
    const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
    for (size_t i = 0; rnd != NULL && i < 16; i++)
        snprintf(instance + 2 * i, 3, "%02x", rnd[i]);
    bool crash_on_start = false, no_init = false;
    long long stderr_lines = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--crash-on-start") == 0)
            crash_on_start = true;
        else if (strcmp(a, "--crash-if-exists") == 0 && i + 1 < argc) {
            if (access(argv[++i], F_OK) == 0)
                return 4;
        } else if (strcmp(a, "--no-init") == 0)
            no_init = true;
        else if (strcmp(a, "--stderr-on-start") == 0)
            stderr_lines = count_arg(argc, argv, i++, 0, MAX_STDERR_LINES);
        else if (strcmp(a, "--exit-after-init") == 0)
            exit_after_init = true;
        else if (strcmp(a, "--drift") == 0)
            find_tool("echo")->description = ECHO_DESCRIPTION_CHANGED;
        else if (strcmp(a, "--page-size") == 0)
            page_size = count_arg(argc, argv, i++, 1, MAX_PAGE_SIZE);
        else if (strcmp(a, "--unsupported-schema") == 0)
            find_tool("weird")->hidden = false;
        else if (strcmp(a, "--no-tools") == 0)
            no_tools = true;
        else if (strcmp(a, "--list-hang") == 0)
            list_hang = true;
        else if (strcmp(a, "--list-error") == 0)
            list_error = true;
        else if (strcmp(a, "--list-error-first") == 0)
            list_errors = count_arg(argc, argv, i++, 1, 1000);
        else if (strcmp(a, "--generated") == 0)
            generated = count_arg(argc, argv, i++, 1, 100000);
        else if (strcmp(a, "--list-storm") == 0)
            list_storm = true;
        else if (strcmp(a, "--list-delay") == 0)
            list_delay_ms = count_arg(argc, argv, i++, 1, MAX_SLOW_MS);
        else if (strcmp(a, "--pattern") == 0 && i + 1 < argc) {
            const char *pat = argv[++i];
            struct tool *in = find_tool("match_in"), *out = find_tool("match_out");
            in->input_schema = string_schema(pat);
            out->input_schema = string_schema(NULL);
            out->output_schema = string_schema(pat);
            in->hidden = out->hidden = false;
        }
    }

    for (long long i = 1; i <= stderr_lines; i++)
        fprintf(stderr, "startup noise %lld\n", i);
    if (crash_on_start)
        return 2;
    if (no_init) {
        while (read_line() != -1)
            ;
        return 0;
    }

    long n;
    while ((n = read_line()) != -1) {
        if (exit_after_init && init_answered)
            return 0;
        if (n == 0)
            continue;
        cur_line_bytes = (size_t)n;
        handle_line(line_buf, (size_t)n);
    }
    free(line_buf);
    return 0;
}
