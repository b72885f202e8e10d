/*
 * test_auditcli.c — `mcpvisor audit verify` and `mcpvisor audit query` (supervisor/auditcli.c).
 * verify runs on chains the real module wrote (supervisor/audit.c), then on copies with one
 * byte changed, a torn end, files out of order; query runs on hand-written records (the chain
 * does not matter to it) with known times, users and tools, and is checked row by row.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "auditcli.h"

#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

struct fixture {
    char a[64], b[64];
    char *out, *err;
    size_t outlen, errlen;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int fd;

    if (f == NULL)
        return -1;
    snprintf(f->a, sizeof f->a, "/tmp/mcpvisor-test-auditcli.XXXXXX");
    snprintf(f->b, sizeof f->b, "/tmp/mcpvisor-test-auditcli2.XXXXXX");
    if ((fd = mkstemp(f->a)) == -1)
        return -1;
    close(fd);
    if ((fd = mkstemp(f->b)) == -1)
        return -1;
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->a);
    unlink(f->b);
    free(f->out);
    free(f->err);
    free(f);
    return 0;
}

/* Runs `mcpvisor audit <args...>` (NULL-terminated); output and errors land in f. */
static int run(struct fixture *f, ...)
{
    char *argv[32];
    int argc = 0, rc;
    FILE *out, *err;
    va_list ap;

    va_start(ap, f);
    while ((argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    free(f->out);
    free(f->err);
    f->out = f->err = NULL;
    out = open_memstream(&f->out, &f->outlen);
    err = open_memstream(&f->err, &f->errlen);
    assert_non_null(out);
    assert_non_null(err);
    rc = audit_cli(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = malloc(1 << 20);
    size_t n;

    assert_non_null(fp);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static int open_log(const char *path)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    return fd;
}

static cJSON *event(const char *name, const char *user)
{
    cJSON *e = cJSON_CreateObject();

    assert_non_null(e);
    assert_non_null(cJSON_AddStringToObject(e, "event", name));
    assert_non_null(cJSON_AddStringToObject(e, "user", user));
    return e;
}

/* A real chain: 5 records in a, then (rotated) 3 in b. */
static void write_chain(struct fixture *f)
{
    struct event_base *base = event_base_new();
    char err[256];
    struct audit *a;

    assert_non_null(base);
    a = audit_new(base, open_log(f->a), CONFIG_AUDIT_SYNC_NONE, 100, err, sizeof err);
    assert_non_null(a);
    for (int i = 0; i < 4; i++)
        assert_true(audit_record(a, event("call", "alice"), NULL, NULL, 0) > 0);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(audit_reopen(a, open_log(f->b), err, sizeof err), 0);
    for (int i = 0; i < 2; i++)
        assert_true(audit_record(a, event("call", "bob"), NULL, NULL, 0) > 0);
    audit_free(a);
    event_base_free(base);
}

/* The SHA-256 of the file's last line. */
static void last_hash(const char *path, char out[65])
{
    char *text = slurp(path), *end = text + strlen(text) - 1, *start = end;

    assert_int_equal(*end, '\n');
    while (start > text && start[-1] != '\n')
        start--;
    util_sha256_hex(start, (size_t)(end - start), out);
    free(text);
}

/* Changes the first occurrence of `from` after the start of line `lineno` (1-based). */
static void edit_line(const char *path, int lineno, const char *from, const char *to)
{
    char *text = slurp(path), *p = text, *hit;

    for (int i = 1; i < lineno; i++) {
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    hit = strstr(p, from);
    assert_non_null(hit);
    assert_true(hit < strchr(p, '\n'));
    assert_int_equal(strlen(from), strlen(to));
    memcpy(hit, to, strlen(to));
    write_text(path, text);
    free(text);
}

/* ---- verify ------------------------------------------------------------------------------- */

static void verify_accepts_a_chain_across_rotated_files(void **state)
{
    struct fixture *f = *state;
    char ha[65], hb[65], want[512];

    write_chain(f);
    last_hash(f->a, ha);
    last_hash(f->b, hb);
    assert_int_equal(run(f, "verify", f->a, f->b, NULL), AUDITCLI_EXIT_OK);
    snprintf(want, sizeof want,
             "%s:1: anchor: seq 1, prev "
             "0000000000000000000000000000000000000000000000000000000000000000\n"
             "%s: ok: 5 records, seq 1..5, last hash %s\n"
             "%s: ok: 3 records, seq 6..8, last hash %s\n",
             f->a, f->a, ha, f->b, hb);
    assert_string_equal(f->out, want);
    assert_string_equal(f->err, "");

    /* The second file alone: its first line is the anchor. */
    assert_int_equal(run(f, "verify", f->b, NULL), AUDITCLI_EXIT_OK);
    snprintf(want, sizeof want, "%s:1: anchor: seq 6, prev %s\n", f->b, ha);
    assert_non_null(strstr(f->out, want));
}

static void verify_reports_a_changed_byte_at_the_next_line(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_chain(f);
    edit_line(f->a, 3, "alice", "alicf");
    assert_int_equal(run(f, "verify", f->a, f->b, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want, "%s:4: chain broken: prev is not the SHA-256 of %s:3 (expected ",
             f->a, f->a);
    assert_non_null(strstr(f->out, want));
    assert_null(strstr(f->out, ": ok:"));
}

static void verify_reports_a_seq_that_does_not_follow(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_chain(f);
    edit_line(f->a, 2, "\"seq\":2", "\"seq\":7");
    assert_int_equal(run(f, "verify", f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want,
             "%s:2: chain broken: seq does not follow %s:1 (expected 2, found 7)\n", f->a, f->a);
    assert_non_null(strstr(f->out, want));
}

static void verify_reports_files_out_of_order(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_chain(f);
    assert_int_equal(run(f, "verify", f->b, f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want,
             "%s:1: chain broken: seq does not follow %s:3 (expected 9, found 1)\n", f->a, f->b);
    assert_non_null(strstr(f->out, want));
}

static void verify_reports_a_torn_last_line(void **state)
{
    struct fixture *f = *state;
    char *text, want[256];
    FILE *fp;

    write_chain(f);
    text = slurp(f->b);
    fp = fopen(f->b, "a");
    assert_non_null(fp);
    fputs("{\"seq\":9,\"ts\":", fp);
    fclose(fp);
    free(text);
    assert_int_equal(run(f, "verify", f->a, f->b, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want,
             "%s:4: chain broken: torn record: the last line has no line end (14 bytes)\n", f->b);
    assert_non_null(strstr(f->out, want));
}

static void verify_checks_each_record_s_shape(void **state)
{
    struct fixture *f = *state;
    char want[256];

    write_text(f->a, "{\"seq\":1,\"ts\":\"2026-11-28T19:30:00.123456Z\",\"prev\":\"" ZERO64
                     "\",\"event\":\"x\"}\nnot json\n");
    assert_int_equal(run(f, "verify", f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want, "%s:2: chain broken: not a JSON object\n", f->a);
    assert_non_null(strstr(f->out, want));

    write_text(f->a,
               "{\"seq\":1,\"ts\":\"2026-11-28 19:30\",\"prev\":\"" ZERO64 "\",\"event\":\"x\"}\n");
    assert_int_equal(run(f, "verify", f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want,
             "%s:1: chain broken: \"ts\" is not an RFC 3339 time (found 2026-11-28 19:30)\n", f->a);
    assert_string_equal(f->out, want);

    write_text(f->a,
               "{\"seq\":1,\"ts\":\"2026-11-28T19:30:00Z\",\"prev\":\"ABC\",\"event\":\"x\"}\n");
    assert_int_equal(run(f, "verify", f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want, "%s:1: chain broken: no \"prev\" (64 lower-case hex digits)\n",
             f->a);
    assert_string_equal(f->out, want);
}

static void verify_refuses_overlong_lines(void **state)
{
    struct fixture *f = *state;
    size_t n = AUDIT_MAX_LINE + 10;
    char *text = malloc(n + 2), want[256];

    assert_non_null(text);
    memset(text, 'x', n);
    text[n] = '\n';
    text[n + 1] = '\0';
    write_text(f->a, text);
    free(text);
    assert_int_equal(run(f, "verify", f->a, NULL), AUDITCLI_EXIT_BROKEN);
    snprintf(want, sizeof want, "%s:1: chain broken: line longer than 65536 bytes\n", f->a);
    assert_string_equal(f->out, want);
}

static void verify_usage_and_io_errors_exit_2(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(run(f, "verify", NULL), AUDITCLI_EXIT_ERROR);
    assert_non_null(strstr(f->err, "usage: mcpvisor audit verify FILE..."));
    assert_int_equal(run(f, "verify", "/nonexistent/audit.jsonl", NULL), AUDITCLI_EXIT_ERROR);
    assert_string_equal(f->err,
                        "/nonexistent/audit.jsonl: cannot open: No such file or directory\n");
    assert_int_equal(run(f, "frobnicate", NULL), AUDITCLI_EXIT_ERROR);
    assert_int_equal(run(f, NULL), AUDITCLI_EXIT_ERROR);
    assert_int_equal(run(f, "help", NULL), AUDITCLI_EXIT_OK);
    assert_non_null(strstr(f->out, "usage:"));
}

/* ---- query -------------------------------------------------------------------------------- */

/* Records by hand: the chain does not matter to query. */
static const char QUERY_LOG[] =
    "{\"seq\":1,\"ts\":\"2026-11-20T09:00:00.000000Z\",\"prev\":\"" ZERO64
    "\",\"event\":\"audit_open\",\"reason\":\"start\"}\n"
    "{\"seq\":2,\"ts\":\"2026-11-20T10:00:00.000000Z\",\"prev\":\"x\",\"event\":\"call\","
    "\"tenant\":\"acme\",\"user\":\"alice\",\"agent\":\"ci-bot\",\"tool\":\"read_invoice\","
    "\"tool_version\":\"2\",\"server\":\"invoices\",\"session\":\"s1\",\"request_id\":\"1\","
    "\"method\":\"tools/call\"}\n"
    "{\"seq\":3,\"ts\":\"2026-11-20T10:00:00.250000Z\",\"prev\":\"x\",\"event\":\"result\","
    "\"call_seq\":2,\"tenant\":\"acme\",\"user\":\"alice\",\"tool\":\"read_invoice\","
    "\"server\":\"invoices\",\"outcome\":\"ok\",\"latency_ms\":250}\n"
    "this line is not JSON\n"
    "{\"seq\":5,\"ts\":\"2026-11-21T08:30:00.000000Z\",\"prev\":\"x\",\"event\":\"call\","
    "\"tenant\":\"acme\",\"user\":\"bob\",\"agent\":\"desk\",\"tool\":\"pay_invoice\","
    "\"tool_version\":\"1\",\"server\":\"invoices\",\"method\":\"tools/call\"}\n"
    "{\"seq\":6,\"ts\":\"2026-11-21T09:00:00.000000Z\",\"prev\":\"x\",\"event\":\"call\","
    "\"tenant\":\"acme\",\"user\":\"alice\",\"agent\":\"ci-bot\",\"tool\":\"pay_invoice\","
    "\"tool_version\":\"1\",\"server\":\"invoices\",\"method\":\"tools/call\"}\n"
    "{\"seq\":7,\"ts\":\"2026-11-21T09:00:01.500000Z\",\"prev\":\"x\",\"event\":\"result\","
    "\"call_seq\":6,\"user\":\"alice\",\"tool\":\"pay_invoice\",\"outcome\":\"error\","
    "\"error_type\":\"quota_exceeded\",\"latency_ms\":1.5}\n"
    "{\"seq\":8,\"ts\":\"2026-11-22T12:00:00.000000Z\",\"prev\":\"x\",\"event\":\"call\","
    "\"tenant\":\"beta\",\"user\":\"eve\\u001b[31m\",\"server\":\"docs\","
    "\"method\":\"resources/read\"}\n"
    "{\"seq\":9,\"ts\":\"2026-11-22T12:00:00.100000Z\",\"prev\":\"x\",\"event\":\"session_end\","
    "\"user\":\"eve\"}\n";

static const char HEADER[] =
    "TIME  TENANT  USER  AGENT  SERVER  TOOL  VERSION  OUTCOME  LATENCY_MS\n";

static void query_joins_calls_with_their_results(void **state)
{
    struct fixture *f = *state;

    write_text(f->a, QUERY_LOG);
    assert_int_equal(run(f, "query", f->a, NULL), AUDITCLI_EXIT_OK);
    assert_string_equal(
        f->out, "TIME                         TENANT  USER      AGENT   SERVER    TOOL            "
                "VERSION  OUTCOME         LATENCY_MS\n"
                "2026-11-20T10:00:00.000000Z  acme    alice     ci-bot  invoices  read_invoice    "
                "2        ok              250\n"
                "2026-11-21T08:30:00.000000Z  acme    bob       desk    invoices  pay_invoice     "
                "1        -               -\n"
                "2026-11-21T09:00:00.000000Z  acme    alice     ci-bot  invoices  pay_invoice     "
                "1        quota_exceeded  1.500\n"
                "2026-11-22T12:00:00.000000Z  beta    eve?[31m  -       docs      resources/read  "
                "-        -               -\n");
    assert_non_null(strstr(f->err, "skipped 1 unparseable lines (the first at line 4)"));
}

static void query_filters_by_user_tool_and_time(void **state)
{
    struct fixture *f = *state;

    write_text(f->a, QUERY_LOG);
    assert_int_equal(run(f, "query", f->a, "--user", "alice", NULL), AUDITCLI_EXIT_OK);
    assert_non_null(strstr(f->out, "read_invoice"));
    assert_non_null(strstr(f->out, "quota_exceeded"));
    assert_null(strstr(f->out, "bob"));
    assert_null(strstr(f->out, "eve"));

    assert_int_equal(run(f, "query", "--tool=pay_invoice", f->a, NULL), AUDITCLI_EXIT_OK);
    assert_null(strstr(f->out, "read_invoice"));
    assert_non_null(strstr(f->out, "bob"));
    assert_non_null(strstr(f->out, "quota_exceeded"));

    /* --since inclusive, --until exclusive; a date is midnight UTC. */
    assert_int_equal(
        run(f, "query", f->a, "--since", "2026-11-21", "--until", "2026-11-21T09:00:00Z", NULL),
        AUDITCLI_EXIT_OK);
    assert_non_null(strstr(f->out, "2026-11-21T08:30:00.000000Z"));
    assert_null(strstr(f->out, "2026-11-21T09:00:00.000000Z"));
    assert_null(strstr(f->out, "2026-11-20"));
    /* An offset: 10:00+02:00 is 08:00Z. */
    assert_int_equal(run(f, "query", f->a, "--since", "2026-11-21T10:00:00+02:00", "--until",
                         "2026-11-22", NULL),
                     AUDITCLI_EXIT_OK);
    assert_non_null(strstr(f->out, "2026-11-21T08:30:00.000000Z"));
    assert_non_null(strstr(f->out, "2026-11-21T09:00:00.000000Z"));
    assert_null(strstr(f->out, "2026-11-22T12"));

    assert_int_equal(run(f, "query", f->a, "--tenant", "beta", "--server", "docs", NULL),
                     AUDITCLI_EXIT_OK);
    assert_non_null(strstr(f->out, "resources/read"));
    assert_null(strstr(f->out, "acme"));

    /* No match is not an error: an empty table. */
    assert_int_equal(run(f, "query", f->a, "--user", "mallory", "--agent", "x", NULL),
                     AUDITCLI_EXIT_OK);
    assert_string_equal(f->out, HEADER);
}

static void query_json_gives_the_call_with_outcome_and_latency(void **state)
{
    struct fixture *f = *state;
    char *line2;
    cJSON *v;

    write_text(f->a, QUERY_LOG);
    assert_int_equal(run(f, "query", f->a, "--user", "alice", "--json", NULL), AUDITCLI_EXIT_OK);
    line2 = strchr(f->out, '\n');
    assert_non_null(line2);
    *line2++ = '\0';
    v = cJSON_Parse(f->out);
    assert_non_null(v);
    assert_int_equal(cJSON_GetObjectItem(v, "seq")->valuedouble, 2);
    assert_string_equal(cJSON_GetObjectItem(v, "agent")->valuestring, "ci-bot");
    assert_string_equal(cJSON_GetObjectItem(v, "session")->valuestring, "s1");
    assert_string_equal(cJSON_GetObjectItem(v, "outcome")->valuestring, "ok");
    assert_int_equal(cJSON_GetObjectItem(v, "latency_ms")->valuedouble, 250);
    cJSON_Delete(v);
    v = cJSON_Parse(line2);
    assert_non_null(v);
    assert_string_equal(cJSON_GetObjectItem(v, "outcome")->valuestring, "quota_exceeded");
    cJSON_Delete(v);
    /* Two rows, nothing else. */
    assert_non_null(strchr(line2, '\n'));
    assert_string_equal(strchr(line2, '\n'), "\n");

    assert_int_equal(run(f, "query", f->a, "--user", "bob", "--json", NULL), AUDITCLI_EXIT_OK);
    v = cJSON_Parse(f->out);
    assert_non_null(v);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(v, "outcome")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(v, "latency_ms")));
    cJSON_Delete(v);
}

static void query_joins_across_files_in_any_order(void **state)
{
    struct fixture *f = *state;
    const char *split = strstr(QUERY_LOG, "{\"seq\":3,");
    char *first = strndup(QUERY_LOG, (size_t)(split - QUERY_LOG));

    assert_non_null(first);
    write_text(f->a, first);
    write_text(f->b, split);
    free(first);
    assert_int_equal(run(f, "query", f->b, f->a, "--tool", "read_invoice", NULL), AUDITCLI_EXIT_OK);
    assert_string_equal(
        strchr(f->out, '\n') + 1,
        "2026-11-20T10:00:00.000000Z  acme    alice  ci-bot  invoices  read_invoice  "
        "2        ok       250\n");
}

static void query_usage_errors_exit_2(void **state)
{
    struct fixture *f = *state;

    write_text(f->a, QUERY_LOG);
    assert_int_equal(run(f, "query", NULL), AUDITCLI_EXIT_ERROR);
    assert_non_null(strstr(f->err, "audit query: no FILE given"));
    assert_int_equal(run(f, "query", f->a, "--colour", "red", NULL), AUDITCLI_EXIT_ERROR);
    assert_non_null(strstr(f->err, "audit query: unknown option --colour"));
    assert_int_equal(run(f, "query", f->a, "--since", "yesterday", NULL), AUDITCLI_EXIT_ERROR);
    assert_non_null(strstr(f->err, "--since: expected an RFC 3339 time"));
    assert_int_equal(run(f, "query", f->a, "--user", NULL), AUDITCLI_EXIT_ERROR);
    assert_non_null(strstr(f->err, "--user needs a value"));
    assert_int_equal(run(f, "query", "/nonexistent", NULL), AUDITCLI_EXIT_ERROR);
}

/* ---- time parsing ------------------------------------------------------------------------- */

static void rfc3339_times_parse_to_microseconds(void **state)
{
    int64_t us;

    (void)state;
    assert_int_equal(audit_parse_time("1970-01-01T00:00:00Z", false, &us), 0);
    assert_int_equal(us, 0);
    assert_int_equal(audit_parse_time("2026-11-28T19:30:00.123456Z", false, &us), 0);
    assert_int_equal(us, INT64_C(1795894200123456));
    assert_int_equal(audit_parse_time("2026-11-28t21:30:00.1234567+02:00", false, &us), 0);
    assert_int_equal(us, INT64_C(1795894200123456));
    assert_int_equal(audit_parse_time("2026-11-28T19:00:00.5-00:30", false, &us), 0);
    assert_int_equal(us, INT64_C(1795894200500000));
    assert_int_equal(audit_parse_time("2024-02-29T00:00:00Z", false, &us), 0);
    assert_int_equal(us, INT64_C(1709164800000000));
    assert_int_equal(audit_parse_time("2026-11-21", true, &us), 0);
    assert_int_equal(us, INT64_C(1795219200000000));

    assert_int_equal(audit_parse_time("2026-11-21", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-02-29T00:00:00Z", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21T24:00:00Z", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21T10:00:00", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21T10:00:00.Z", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21T10:00:00Z ", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21T10:00Z", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-11-21 10:00:00Z", false, &us), -1);
    assert_int_equal(audit_parse_time("2026-13-01", true, &us), -1);
    assert_int_equal(audit_parse_time("", true, &us), -1);
}

/* A result finds its call by call_id even when its call_seq went stale (a failed write made
 * the log number records again), and --json output is plain ASCII. */
static void query_joins_by_call_id_and_prints_ascii(void **state)
{
    struct fixture *f = *state;

    write_text(f->a, "{\"seq\":1,\"ts\":\"2026-11-20T10:00:00.000000Z\",\"prev\":\"x\",\"event\":"
                     "\"call\",\"call_id\":\"n-1\",\"tenant\":\"acme\",\"user\":\"al\xc2\x9bice\","
                     "\"tool\":\"t\",\"server\":\"s\",\"method\":\"tools/call\"}\n"
                     "{\"seq\":2,\"ts\":\"2026-11-20T10:00:01.000000Z\",\"prev\":\"x\",\"event\":"
                     "\"result\",\"call_id\":\"n-1\",\"call_seq\":2,\"outcome\":\"timeout\","
                     "\"latency_ms\":7}\n"
                     "{\"seq\":3,\"ts\":\"2026-11-20T10:00:02.000000Z\",\"prev\":\"x\",\"event\":"
                     "\"result\",\"call_id\":\"n-9\",\"call_seq\":1,\"outcome\":\"ok\"}\n");
    assert_int_equal(run(f, "query", f->a, "--json", NULL), AUDITCLI_EXIT_OK);
    for (const char *p = f->out; *p != '\0'; p++)
        assert_true((unsigned char)*p < 0x7f);
    assert_non_null(strstr(f->out, "al\\u009bice"));
    cJSON *v = cJSON_Parse(f->out);
    assert_non_null(v);
    assert_string_equal(cJSON_GetObjectItem(v, "outcome")->valuestring, "timeout");
    assert_int_equal(cJSON_GetObjectItem(v, "latency_ms")->valuedouble, 7);
    cJSON_Delete(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(verify_accepts_a_chain_across_rotated_files),
        T(verify_reports_a_changed_byte_at_the_next_line),
        T(verify_reports_a_seq_that_does_not_follow),
        T(verify_reports_files_out_of_order),
        T(verify_reports_a_torn_last_line),
        T(verify_checks_each_record_s_shape),
        T(verify_refuses_overlong_lines),
        T(verify_usage_and_io_errors_exit_2),
        T(query_joins_calls_with_their_results),
        T(query_filters_by_user_tool_and_time),
        T(query_json_gives_the_call_with_outcome_and_latency),
        T(query_joins_across_files_in_any_order),
        T(query_usage_errors_exit_2),
        T(rfc3339_times_parse_to_microseconds),
        T(query_joins_by_call_id_and_prints_ascii),
#undef T
    };

    return cmocka_run_group_tests_name("auditcli", tests, NULL, NULL);
}
