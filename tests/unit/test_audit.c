/*
 * test_audit.c — the hash-chained audit log (supervisor/audit.c) on real temporary files and a
 * real event_base: the line format and the chain (hashes recomputed here with OpenSSL), group
 * commit (one write and one fdatasync per batch, callbacks only afterwards), the writer thread
 * (the loop runs while a write or sync is held; what queues meanwhile goes out in one write),
 * continuing a file after a restart, cutting off a torn last line, rotation and reopen, and the
 * failure path: a disk that fails (injected write/fdatasync, /dev/full) refuses waiting calls,
 * leaves no torn line, keeps callback-less records for a retry and resumes on its own; a failed
 * write also fails what was chained behind it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- helpers ------------------------------------------------------------------------------- */

struct fixture {
    struct event_base *base;
    char path[64];  /* the log */
    char path2[64]; /* a rotated-to file */
    char err[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int fd;

    if (f == NULL || (f->base = event_base_new()) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "/tmp/mcpvisor-test-audit.XXXXXX");
    snprintf(f->path2, sizeof f->path2, "/tmp/mcpvisor-test-audit2.XXXXXX");
    if ((fd = mkstemp(f->path)) == -1)
        return -1;
    close(fd);
    if ((fd = mkstemp(f->path2)) == -1)
        return -1;
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink(f->path);
    unlink(f->path2);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* As the parent opens it. */
static int open_log(const char *path)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    return fd;
}

static struct audit *open_audit(struct fixture *f, enum config_audit_sync sync)
{
    struct audit *a = audit_new(f->base, open_log(f->path), sync, 100, f->err, sizeof f->err);

    if (a == NULL)
        fail_msg("audit_new: %s", f->err);
    return a;
}

#define DEADLINE_MS 5000

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Runs the loop until cond(arg) holds, failing the test after DEADLINE_MS. */
static void run_until(struct fixture *f, bool (*cond)(void *), void *arg)
{
    struct timeval tv = {.tv_sec = DEADLINE_MS / 1000, .tv_usec = (DEADLINE_MS % 1000) * 1000};
    bool expired = false;
    struct event *deadline = evtimer_new(f->base, on_deadline, &expired);

    assert_non_null(deadline);
    assert_int_equal(evtimer_add(deadline, &tv), 0);
    while (!cond(arg) && !expired)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(deadline);
    if (!cond(arg))
        fail_msg("condition not met within %d ms", DEADLINE_MS);
}

static bool is_idle(void *a)
{
    return audit_idle(a);
}

/*
 * Runs the loop until nothing is active and the log is idle: what was queued is written (by the
 * writer thread) and its callbacks have run.
 */
static void turn(struct fixture *f, struct audit *a)
{
    for (;;) {
        for (int i = 0; i < 4; i++)
            event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (audit_idle(a))
            return;
        run_until(f, is_idle, a);
    }
}

/* Runs the loop for about ms milliseconds (timers fire). */
static void run_for(struct fixture *f, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

#define MAX_LINES 8192

struct lines {
    char *text; /* the file, NULs in place of the "\n"s */
    char *line[MAX_LINES];
    size_t len[MAX_LINES];
    size_t n;
};

/* The file's lines; every line must end with "\n" (no torn line ever stays). */
static void read_lines(const char *path, struct lines *l)
{
    size_t len, start = 0;

    memset(l, 0, sizeof *l);
    l->text = slurp(path, &len);
    if (len > 0)
        assert_int_equal(l->text[len - 1], '\n');
    for (size_t i = 0; i < len; i++) {
        if (l->text[i] != '\n')
            continue;
        assert_true(l->n < MAX_LINES);
        l->text[i] = '\0';
        l->line[l->n] = l->text + start;
        l->len[l->n] = i - start;
        l->n++;
        start = i + 1;
    }
}

static void free_lines(struct lines *l)
{
    free(l->text);
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    assert_int_equal(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "2026-11-28T19:30:00.123456Z" */
static void assert_ts_format(const char *ts)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";

    assert_int_equal(strlen(ts), sizeof shape - 1);
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd')
            assert_true(is_digit(ts[i]));
        else
            assert_int_equal(ts[i], shape[i]);
    }
}

static cJSON *parse_line(const struct lines *l, size_t i)
{
    cJSON *v = cJSON_Parse(l->line[i]);

    assert_non_null(v);
    assert_true(cJSON_IsObject(v));
    return v;
}

static const char *field(const cJSON *v, const char *key)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, key);

    return cJSON_IsString(s) ? s->valuestring : NULL;
}

static uint64_t seq_of(const cJSON *v)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "seq");

    assert_true(cJSON_IsNumber(s));
    return (uint64_t)s->valuedouble;
}

/*
 * The whole chain of one file: seqs from first_seq up by one, the first prev is first_prev, each
 * later prev is the SHA-256 of the line before, ts well formed, keys in order seq, ts, prev,
 * event. Returns the number of lines.
 */
static size_t assert_chain(const char *path, uint64_t first_seq, const char *first_prev)
{
    struct lines l;
    char want_prev[65], head[64];
    size_t n;

    read_lines(path, &l);
    snprintf(want_prev, sizeof want_prev, "%s", first_prev);
    for (size_t i = 0; i < l.n; i++) {
        cJSON *v = parse_line(&l, i);

        assert_int_equal(seq_of(v), first_seq + i);
        assert_string_equal(field(v, "prev"), want_prev);
        assert_ts_format(field(v, "ts"));
        assert_non_null(field(v, "event"));
        snprintf(head, sizeof head, "{\"seq\":%" PRIu64 ",\"ts\":\"", first_seq + i);
        assert_memory_equal(l.line[i], head, strlen(head));
        assert_memory_equal(l.line[i] + strlen(head) + 27, "\",\"prev\":\"", 10);
        assert_memory_equal(l.line[i] + strlen(head) + 27 + 10 + 64, "\",\"event\":\"", 11);
        sha256_hex(l.line[i], l.len[i], want_prev);
        cJSON_Delete(v);
    }
    n = l.n;
    free_lines(&l);
    return n;
}

/* The SHA-256 of the file's last line. */
static void last_hash(const char *path, char out[65])
{
    struct lines l;

    read_lines(path, &l);
    assert_true(l.n > 0);
    sha256_hex(l.line[l.n - 1], l.len[l.n - 1], out);
    free_lines(&l);
}

/* Line i (0-based) parsed; the caller frees. */
static cJSON *line_json(const char *path, size_t i)
{
    struct lines l;
    cJSON *v;

    read_lines(path, &l);
    assert_true(i < l.n);
    v = parse_line(&l, i);
    free_lines(&l);
    return v;
}

static size_t count_lines(const char *path)
{
    struct lines l;
    size_t n;

    read_lines(path, &l);
    n = l.n;
    free_lines(&l);
    return n;
}

static cJSON *event(const char *name, const char *user)
{
    cJSON *e = cJSON_CreateObject();

    assert_non_null(e);
    assert_non_null(cJSON_AddStringToObject(e, "event", name));
    if (user != NULL)
        assert_non_null(cJSON_AddStringToObject(e, "user", user));
    return e;
}

#define MAX_CALLS 256

struct answers {
    size_t n, ok, failed;
    uint64_t token[MAX_CALLS];
};

static void on_answer(void *ctx, uint64_t token, bool ok)
{
    struct answers *ans = ctx;

    assert_true(ans->n < MAX_CALLS);
    ans->token[ans->n++] = token;
    if (ok)
        ans->ok++;
    else
        ans->failed++;
}

/* Injected I/O: counts calls, fails on demand, writes half the buffer before failing. */
static struct {
    int writes, syncs;
    bool fail_write, fail_sync;
    int error;
} io;

static ssize_t counting_write(int fd, const void *buf, size_t len)
{
    io.writes++;
    if (io.fail_write) {
        /* A torn write: half of it reaches the file, then the disk is full. */
        if (len > 1 && write(fd, buf, len / 2) == -1)
            return -1;
        errno = io.error;
        return -1;
    }
    return write(fd, buf, len);
}

static int counting_sync(int fd)
{
    io.syncs++;
    if (io.fail_sync) {
        errno = io.error;
        return -1;
    }
    return fdatasync(fd);
}

static void io_reset(void)
{
    memset(&io, 0, sizeof io);
    io.error = ENOSPC;
}

/* ---- format and group commit -------------------------------------------------------------- */

static void first_record_opens_a_zero_anchored_chain(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    cJSON *v;

    /* audit_new writes its audit_open record at once. */
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 1);
    v = line_json(f->path, 0);
    assert_string_equal(field(v, "event"), "audit_open");
    assert_string_equal(field(v, "reason"), "start");
    assert_null(cJSON_GetObjectItemCaseSensitive(v, "truncated_bytes"));
    cJSON_Delete(v);
    assert_true(audit_available(a));
    audit_free(a);
}

static void records_chain_and_callbacks_fire_after_the_write(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    cJSON *e, *v;
    off_t before = file_size(f->path);

    e = event("call", "alice");
    cJSON_AddStringToObject(e, "tool", "read_invoice");
    /* Our own keys in the event are dropped, and "event" comes first. */
    cJSON_AddNumberToObject(e, "seq", 999);
    cJSON_AddStringToObject(e, "prev", "forged");
    cJSON_AddStringToObject(e, "note", "line\nbreak \"quoted\"");
    assert_int_equal(audit_record(a, e, on_answer, &ans, 11), 2);
    assert_int_equal(audit_record(a, event("result", "alice"), on_answer, &ans, 12), 3);
    assert_int_equal(audit_record(a, event("session_end", NULL), NULL, NULL, 0), 4);

    /* Nothing is answered from inside audit_record, nor written before the turn ends. */
    assert_int_equal(ans.n, 0);
    assert_int_equal(file_size(f->path), before);
    turn(f, a);
    assert_int_equal(ans.n, 2);
    assert_int_equal(ans.ok, 2);
    assert_int_equal(ans.token[0], 11);
    assert_int_equal(ans.token[1], 12);

    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 4);
    v = line_json(f->path, 1);
    assert_string_equal(field(v, "event"), "call");
    assert_string_equal(field(v, "user"), "alice");
    assert_string_equal(field(v, "tool"), "read_invoice");
    assert_string_equal(field(v, "note"), "line\nbreak \"quoted\"");
    assert_int_equal(seq_of(v), 2);
    cJSON_Delete(v);
    audit_free(a);
}

static void one_turn_is_one_write_and_one_fdatasync(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    off_t before = file_size(f->path);

    io_reset();
    audit_set_io(a, counting_write, counting_sync);
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(audit_record(a, event("call", "bob"), on_answer, &ans, i), i + 2);
    turn(f, a);
    assert_int_equal(io.writes, 1);
    assert_int_equal(io.syncs, 1);
    assert_int_equal(ans.ok, 100);
    assert_int_equal(ans.failed, 0);
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(ans.token[i], i);
    assert_true(file_size(f->path) > before);

    /* Two turns, two commits. */
    assert_true(audit_record(a, event("call", "bob"), on_answer, &ans, 100) > 0);
    turn(f, a);
    assert_true(audit_record(a, event("call", "bob"), on_answer, &ans, 101) > 0);
    turn(f, a);
    assert_int_equal(io.writes, 3);
    assert_int_equal(io.syncs, 3);
    assert_int_equal(ans.ok, 102);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 103);
    audit_free(a);
}

static void batch_mode_answers_after_the_write_and_syncs_on_a_timer(void **state)
{
    struct fixture *f = *state;
    struct audit *a =
        audit_new(f->base, open_log(f->path), CONFIG_AUDIT_SYNC_BATCH, 50, f->err, sizeof f->err);
    struct answers ans = {0};

    assert_non_null(a);
    io_reset();
    audit_set_io(a, counting_write, counting_sync);
    run_for(f, 120); /* the audit_open record's sync */
    turn(f, a);
    io_reset();
    for (uint64_t i = 0; i < 10; i++)
        assert_true(audit_record(a, event("call", "carol"), on_answer, &ans, i) > 0);
    turn(f, a);
    assert_int_equal(ans.ok, 10);
    assert_int_equal(io.writes, 1);
    assert_int_equal(io.syncs, 0);
    run_for(f, 120);
    turn(f, a); /* the sync runs on the writer thread */
    assert_int_equal(io.syncs, 1);
    /* Idle: no more syncs. */
    run_for(f, 120);
    turn(f, a);
    assert_int_equal(io.syncs, 1);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 11);
    audit_free(a);
}

static void none_mode_never_syncs(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_NONE);
    struct answers ans = {0};

    io_reset();
    audit_set_io(a, counting_write, counting_sync);
    assert_true(audit_record(a, event("call", "dan"), on_answer, &ans, 1) > 0);
    turn(f, a);
    run_for(f, 150);
    turn(f, a);
    assert_int_equal(ans.ok, 1);
    assert_int_equal(io.writes, 1);
    assert_int_equal(io.syncs, 0);
    audit_free(a);
    assert_int_equal(io.syncs, 0);
}

static void free_writes_what_is_queued_and_answers(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};

    assert_int_equal(audit_record(a, event("call", "erin"), on_answer, &ans, 7), 2);
    audit_free(a);
    assert_int_equal(ans.n, 1);
    assert_int_equal(ans.ok, 1);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);
}

static void invalid_events_are_not_queued(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    cJSON *e = cJSON_CreateObject();

    assert_int_equal(audit_record(a, e, on_answer, &ans, 1), 0); /* no "event" */
    e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "event", 5);
    assert_int_equal(audit_record(a, e, on_answer, &ans, 2), 0);
    assert_int_equal(audit_record(a, cJSON_CreateArray(), on_answer, &ans, 3), 0);
    assert_int_equal(audit_record(a, NULL, on_answer, &ans, 4), 0);
    turn(f, a);
    assert_int_equal(ans.n, 0);
    /* The chain did not move. */
    assert_int_equal(audit_record(a, event("call", "x"), on_answer, &ans, 5), 2);
    turn(f, a);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);
    audit_free(a);
}

static void oversized_records_are_cut_or_replaced(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_NONE);
    struct answers ans = {0};
    size_t big = 100 * 1024;
    char *s = malloc(big + 1), name[16];
    cJSON *e, *v;
    struct lines l;

    assert_non_null(s);
    memset(s, 'a', big);
    s[big] = '\0';
    e = event("call", "frank");
    cJSON_AddStringToObject(e, "arguments", s);
    /* A hash kept beside a value that may be cut, and a string just short of the cut. */
    char h[UTIL_SHA256_HEX + 1], edge[AUDIT_CUT_STRING + sizeof "...[truncated]"];
    util_sha256_hex(s, big, h);
    cJSON_AddStringToObject(e, "arguments_sha256", h);
    memset(edge, 'e', sizeof edge - 1);
    edge[sizeof edge - 1] = '\0';
    cJSON_AddStringToObject(e, "edge", edge);
    assert_int_equal(audit_record(a, e, on_answer, &ans, 1), 2);

    /* Many short strings: cutting does not help, the record is replaced. */
    e = event("tools_list", NULL);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof name, "k%d", i);
        s[200] = '\0';
        cJSON_AddStringToObject(e, name, s);
    }
    assert_int_equal(audit_record(a, e, on_answer, &ans, 2), 3);
    turn(f, a);
    free(s);
    assert_int_equal(ans.ok, 2);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 3);

    read_lines(f->path, &l);
    for (size_t i = 0; i < l.n; i++)
        assert_true(l.len[i] + 1 <= AUDIT_MAX_LINE);
    free_lines(&l);
    v = line_json(f->path, 1);
    assert_string_equal(field(v, "user"), "frank");
    assert_int_equal(strlen(field(v, "arguments")), 256 + strlen("...[truncated]"));
    assert_non_null(strstr(field(v, "arguments"), "...[truncated]"));
    assert_string_equal(field(v, "arguments_sha256"), h);
    assert_string_equal(field(v, "edge"), edge);
    cJSON_Delete(v);
    v = line_json(f->path, 2);
    assert_string_equal(field(v, "event"), "audit_oversize");
    assert_string_equal(field(v, "orig_event"), "tools_list");
    assert_true(cJSON_GetObjectItemCaseSensitive(v, "orig_bytes")->valuedouble > AUDIT_MAX_LINE);
    cJSON_Delete(v);
    audit_free(a);
}

/* ---- continuing a file -------------------------------------------------------------------- */

static void restart_continues_the_chain(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    cJSON *v;

    assert_int_equal(audit_record(a, event("call", "gina"), NULL, NULL, 0), 2);
    assert_int_equal(audit_record(a, event("call", "gina"), NULL, NULL, 0), 3);
    audit_free(a);

    a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    assert_int_equal(audit_record(a, event("call", "gina"), NULL, NULL, 0), 5);
    turn(f, a);
    audit_free(a);

    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 5);
    v = line_json(f->path, 3);
    assert_string_equal(field(v, "event"), "audit_open");
    assert_string_equal(field(v, "reason"), "start");
    cJSON_Delete(v);
}

static void torn_last_line_is_cut_off_and_reported(void **state)
{
    struct fixture *f = *state;
    static const char fragment[] = "{\"seq\":4,\"ts\":\"2026-11-28T19:3";
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    off_t good;
    int fd;
    cJSON *v;

    assert_true(audit_record(a, event("call", "hal"), NULL, NULL, 0) > 0);
    assert_true(audit_record(a, event("call", "hal"), NULL, NULL, 0) > 0);
    audit_free(a);
    good = file_size(f->path);

    /* A crash in the middle of a write. */
    fd = open(f->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, fragment, strlen(fragment)), (ssize_t)strlen(fragment));
    close(fd);

    a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    assert_true(file_size(f->path) > good);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 4);
    v = line_json(f->path, 3);
    assert_string_equal(field(v, "event"), "audit_open");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "truncated_bytes")->valuedouble,
                     strlen(fragment));
    cJSON_Delete(v);
    audit_free(a);
}

static void a_file_that_is_only_a_fragment_starts_over(void **state)
{
    struct fixture *f = *state;
    struct audit *a;
    int fd = open(f->path, O_WRONLY | O_APPEND);
    cJSON *v;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"seq\":1,\"t", 11), 11);
    close(fd);
    a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 1);
    v = line_json(f->path, 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "truncated_bytes")->valuedouble, 11);
    cJSON_Delete(v);
    audit_free(a);
}

static void assert_refused(struct fixture *f, const char *content, const char *want_err)
{
    FILE *fp = fopen(f->path, "w");
    char *after;

    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    assert_null(audit_new(f->base, open_log(f->path), CONFIG_AUDIT_SYNC_ALWAYS, 100, f->err,
                          sizeof f->err));
    assert_string_equal(f->err, want_err);
    /* Nothing was cut off or appended. */
    after = slurp(f->path, NULL);
    assert_string_equal(after, content);
    free(after);
}

static void a_file_that_is_not_an_audit_log_is_refused(void **state)
{
    struct fixture *f = *state;

    assert_refused(f, "hello world\n",
                   "audit log: the last line is not an audit record (a JSON object with a "
                   "positive integer \"seq\")");
    assert_refused(f, "{\"seq\":0}\n",
                   "audit log: the last line is not an audit record (a JSON object with a "
                   "positive integer \"seq\")");
    assert_refused(f, "{\"seq\":3}\n\n",
                   "audit log: the last line is not an audit record (a JSON object with a "
                   "positive integer \"seq\")");
    /* A torn line is only cut off when it looks like one of ours. */
    assert_refused(f, "{\"seq\":3}\nimportant text",
                   "audit log: the last line has no line end and is not the start of a record");
    /* ...and only when the line before it is a record. */
    assert_refused(f, "not json\n{\"seq\":4",
                   "audit log: the last line is not an audit record (a JSON object with a "
                   "positive integer \"seq\")");
}

static void a_tail_without_line_end_within_the_bound_is_refused(void **state)
{
    struct fixture *f = *state;
    size_t n = AUDIT_MAX_LINE + 100;
    char *big = malloc(n + 1);

    assert_non_null(big);
    memset(big, '{', n);
    big[n] = '\0';
    assert_refused(f, big,
                   "audit log: the last 65537 bytes hold no line end: not an audit log, or "
                   "damaged beyond a torn record");
    free(big);
}

/* ---- rotation and reopen ------------------------------------------------------------------ */

static void rotation_continues_the_chain_in_the_new_file(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    char old_last[65];
    cJSON *v;

    assert_int_equal(audit_record(a, event("call", "ivy"), NULL, NULL, 0), 2);
    turn(f, a);
    /* Queued but not yet written when the signal comes: it belongs to the old file. */
    assert_int_equal(audit_record(a, event("call", "ivy"), on_answer, &ans, 1), 3);
    assert_int_equal(audit_reopen(a, open_log(f->path2), f->err, sizeof f->err), 0);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 3);
    assert_int_equal(assert_chain(f->path2, 4, ZERO_HASH) == 0, true); /* still empty */
    turn(f, a);
    assert_int_equal(ans.ok, 1);
    assert_int_equal(audit_record(a, event("call", "ivy"), on_answer, &ans, 2), 5);
    turn(f, a);
    assert_int_equal(ans.ok, 2);

    last_hash(f->path, old_last);
    assert_int_equal(assert_chain(f->path2, 4, old_last), 2);
    v = line_json(f->path2, 0);
    assert_string_equal(field(v, "event"), "audit_open");
    assert_string_equal(field(v, "reason"), "rotate");
    assert_string_equal(field(v, "previous_hash"), old_last);
    cJSON_Delete(v);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 3); /* nothing more in the old file */
    audit_free(a);
}

static void reopen_of_the_same_file_continues_it(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    cJSON *v;

    assert_int_equal(audit_record(a, event("call", "jay"), NULL, NULL, 0), 2);
    assert_int_equal(audit_reopen(a, open_log(f->path), f->err, sizeof f->err), 0);
    assert_int_equal(audit_record(a, event("call", "jay"), NULL, NULL, 0), 4);
    turn(f, a);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 4);
    v = line_json(f->path, 2);
    assert_string_equal(field(v, "reason"), "reopen");
    assert_null(field(v, "previous_hash"));
    cJSON_Delete(v);
    audit_free(a);
}

static void reopen_onto_an_invalid_file_keeps_the_old_one(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    FILE *fp = fopen(f->path2, "w");

    assert_non_null(fp);
    fputs("garbage\n", fp);
    fclose(fp);
    assert_int_equal(audit_reopen(a, open_log(f->path2), f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "audit log: the last line is not an audit record (a JSON object "
                                "with a positive integer \"seq\")");
    assert_int_equal(audit_record(a, event("call", "kim"), NULL, NULL, 0), 2);
    turn(f, a);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);
    audit_free(a);
}

/* ---- failure ------------------------------------------------------------------------------ */

static void failed_write_refuses_leaves_no_torn_line_and_resumes(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    off_t good;
    cJSON *v;

    assert_int_equal(audit_record(a, event("call", "lee"), on_answer, &ans, 1), 2);
    turn(f, a);
    good = file_size(f->path);

    io_reset();
    io.fail_write = true;
    audit_set_io(a, counting_write, counting_sync);
    assert_int_equal(audit_record(a, event("call", "lee"), on_answer, &ans, 2), 3);
    assert_int_equal(audit_record(a, event("session_end", "lee"), NULL, NULL, 0), 4);
    assert_int_equal(audit_record(a, event("call", "lee"), on_answer, &ans, 3), 5);
    turn(f, a);
    assert_int_equal(io.writes, 1);
    assert_int_equal(ans.n, 3);
    assert_int_equal(ans.failed, 2);
    assert_false(audit_available(a));
    /* Half a batch reached the disk and was cut off again. */
    assert_int_equal(file_size(f->path), good);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);

    /* Still failing: records are queued and refused, nothing torn stays. */
    assert_int_equal(audit_record(a, event("call", "lee"), on_answer, &ans, 4), 4);
    turn(f, a);
    assert_int_equal(ans.failed, 3);
    assert_int_equal(file_size(f->path), good);

    /* The disk is back: the kept session_end goes first, the seqs follow the last good line. */
    io.fail_write = false;
    assert_int_equal(audit_record(a, event("call", "lee"), on_answer, &ans, 5), 4);
    turn(f, a);
    assert_int_equal(ans.ok, 2);
    assert_int_equal(ans.token[ans.n - 1], 5);
    assert_true(audit_available(a));
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 4);
    v = line_json(f->path, 2);
    assert_string_equal(field(v, "event"), "session_end");
    cJSON_Delete(v);
    v = line_json(f->path, 3);
    assert_string_equal(field(v, "event"), "call");
    cJSON_Delete(v);
    audit_free(a);
}

static void failed_fdatasync_refuses_and_cuts_the_batch_off(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    off_t good = file_size(f->path);

    io_reset();
    io.fail_sync = true;
    io.error = EIO;
    audit_set_io(a, counting_write, counting_sync);
    assert_int_equal(audit_record(a, event("call", "max"), on_answer, &ans, 1), 2);
    turn(f, a);
    assert_int_equal(io.syncs, 1);
    assert_int_equal(ans.failed, 1);
    assert_false(audit_available(a));
    assert_int_equal(file_size(f->path), good);
    io.fail_sync = false;
    assert_int_equal(audit_record(a, event("call", "max"), on_answer, &ans, 2), 2);
    turn(f, a);
    assert_int_equal(ans.ok, 1);
    assert_true(audit_available(a));
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);
    audit_free(a);
}

static void dev_full_refuses_and_a_good_file_resumes(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    char old_last[65];
    int full = open("/dev/full", O_RDWR | O_APPEND | O_CLOEXEC);
    cJSON *v;

    if (full == -1) {
        audit_free(a);
        skip();
    }
    assert_int_equal(audit_record(a, event("call", "ned"), on_answer, &ans, 1), 2);
    turn(f, a);
    last_hash(f->path, old_last);
    assert_int_equal(audit_reopen(a, full, f->err, sizeof f->err), 0);
    assert_int_equal(audit_record(a, event("call", "ned"), on_answer, &ans, 2), 4);
    assert_int_equal(audit_record(a, event("session_end", "ned"), NULL, NULL, 0), 5);
    turn(f, a);
    assert_int_equal(ans.ok, 1);
    assert_int_equal(ans.failed, 1);
    assert_false(audit_available(a));

    /* SIGHUP onto a fresh file: the chain goes on from the last line that was written. */
    assert_int_equal(audit_reopen(a, open_log(f->path2), f->err, sizeof f->err), 0);
    assert_int_equal(audit_record(a, event("call", "ned"), on_answer, &ans, 3), 6);
    turn(f, a);
    assert_int_equal(ans.ok, 2);
    assert_true(audit_available(a));
    /* rotate record, the kept audit_open of /dev/full and session_end, then the call */
    assert_int_equal(assert_chain(f->path2, 3, old_last), 4);
    v = line_json(f->path2, 0);
    assert_string_equal(field(v, "reason"), "rotate");
    assert_string_equal(field(v, "previous_hash"), old_last);
    cJSON_Delete(v);
    v = line_json(f->path2, 2);
    assert_string_equal(field(v, "event"), "session_end");
    cJSON_Delete(v);
    audit_free(a);
}

static void idle_log_resumes_by_itself(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    size_t n;
    cJSON *v;

    io_reset();
    io.fail_write = true;
    audit_set_io(a, counting_write, counting_sync);
    assert_int_equal(audit_record(a, event("call", "olga"), on_answer, &ans, 1), 2);
    turn(f, a);
    assert_int_equal(ans.failed, 1);
    assert_false(audit_available(a));
    io.fail_write = false;
    /* No call comes in; the retry timer finds the disk back. */
    for (int i = 0; i < 30 && !audit_available(a); i++)
        run_for(f, 100);
    assert_true(audit_available(a));
    n = assert_chain(f->path, 1, ZERO_HASH);
    assert_int_equal(n, 2);
    v = line_json(f->path, 1);
    assert_string_equal(field(v, "event"), "audit_resumed");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "refused_calls")->valuedouble, 1);
    cJSON_Delete(v);
    audit_free(a);
}

static void retry_queue_is_bounded_and_gaps_are_recorded(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_NONE);
    struct answers ans = {0};
    const unsigned extra = 10;
    cJSON *v;

    io_reset();
    io.fail_write = true;
    audit_set_io(a, counting_write, counting_sync);
    for (unsigned i = 0; i < AUDIT_RETRY_MAX + extra; i++) {
        assert_true(audit_record(a, event("session_end", "pat"), NULL, NULL, 0) > 0);
        if (i % 1000 == 999)
            turn(f, a);
    }
    turn(f, a);
    assert_false(audit_available(a));
    assert_int_equal(file_size(f->path) > 0, true);
    assert_int_equal(count_lines(f->path), 1);

    io.fail_write = false;
    assert_true(audit_record(a, event("call", "pat"), on_answer, &ans, 1) > 0);
    turn(f, a);
    assert_int_equal(ans.ok, 1);
    /* audit_open, audit_gap, the 4096 kept records, the call */
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 1 + 1 + AUDIT_RETRY_MAX + 1);
    v = line_json(f->path, 1);
    assert_string_equal(field(v, "event"), "audit_gap");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "dropped")->valuedouble, extra);
    cJSON_Delete(v);
    audit_free(a);
}

/* ---- the writer thread -------------------------------------------------------------------- */

/*
 * Injected I/O that holds a write or an fdatasync on the writer thread until the test writes a
 * byte to held.pipe[1]. Flags are set before audit_set_io hands the functions over.
 */
static struct {
    int pipe[2];
    atomic_int entered; /* held calls that started waiting */
    atomic_int writes, syncs;
    bool hold_write, hold_sync, fail_write;
} held;

static void held_reset(void)
{
    atomic_store(&held.entered, 0);
    atomic_store(&held.writes, 0);
    atomic_store(&held.syncs, 0);
    held.hold_write = held.hold_sync = held.fail_write = false;
    assert_int_equal(pipe(held.pipe), 0);
}

static void held_wait(void)
{
    char c;

    atomic_fetch_add(&held.entered, 1);
    while (read(held.pipe[0], &c, 1) == -1 && errno == EINTR)
        ;
}

static void held_release(int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(write(held.pipe[1], "x", 1), 1);
}

static ssize_t held_write_fn(int fd, const void *buf, size_t len)
{
    atomic_fetch_add(&held.writes, 1);
    if (held.hold_write)
        held_wait();
    if (held.fail_write) {
        if (len > 1 && write(fd, buf, len / 2) == -1)
            return -1;
        errno = EIO;
        return -1;
    }
    return write(fd, buf, len);
}

static int held_sync_fn(int fd)
{
    atomic_fetch_add(&held.syncs, 1);
    if (held.hold_sync)
        held_wait();
    return fdatasync(fd);
}

static bool entered_once(void *arg)
{
    return atomic_load(&held.entered) >= 1;
}

static bool synced_twice(void *arg)
{
    return atomic_load(&held.syncs) >= 2;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (*(int *)arg)++;
}

static bool ticked(void *arg)
{
    return *(int *)arg > 0;
}

static void a_held_sync_does_not_block_the_loop_and_what_queues_shares_one_write(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    struct timeval ms10 = {0, 10000};
    struct event *tick;
    int ticks = 0;

    held_reset();
    held.hold_sync = true;
    audit_set_io(a, held_write_fn, held_sync_fn);
    assert_int_equal(audit_record(a, event("call", "quinn"), on_answer, &ans, 0), 2);
    run_until(f, entered_once, NULL);

    /* The fdatasync is held on the writer thread; a timer on the same base still fires. */
    tick = evtimer_new(f->base, on_tick, &ticks);
    assert_non_null(tick);
    assert_int_equal(evtimer_add(tick, &ms10), 0);
    run_until(f, ticked, &ticks);
    event_free(tick);
    assert_int_equal(ans.n, 0);
    assert_false(audit_idle(a));

    /* Records of several loop turns queue behind the write in flight. */
    for (uint64_t i = 1; i <= 50; i++) {
        assert_int_equal(audit_record(a, event("call", "quinn"), on_answer, &ans, i), i + 2);
        if (i % 10 == 0)
            event_base_loop(f->base, EVLOOP_NONBLOCK);
    }
    assert_int_equal(ans.n, 0);
    assert_int_equal(atomic_load(&held.writes), 1);
    assert_int_equal(atomic_load(&held.syncs), 1);

    /* Released, they go out in one write and one fdatasync. */
    held_release(2);
    turn(f, a);
    assert_int_equal(atomic_load(&held.writes), 2);
    assert_int_equal(atomic_load(&held.syncs), 2);
    assert_int_equal(ans.ok, 51);
    for (uint64_t i = 0; i <= 50; i++)
        assert_int_equal(ans.token[i], i);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 52);
    audit_free(a);
    close(held.pipe[0]);
    close(held.pipe[1]);
}

static void a_failed_write_in_flight_fails_what_is_queued_behind_it(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    off_t good;
    cJSON *v;

    assert_int_equal(audit_record(a, event("call", "rae"), on_answer, &ans, 1), 2);
    turn(f, a);
    good = file_size(f->path);

    held_reset();
    held.hold_write = true;
    held.fail_write = true;
    audit_set_io(a, held_write_fn, held_sync_fn);
    assert_int_equal(audit_record(a, event("call", "rae"), on_answer, &ans, 2), 3);
    assert_int_equal(audit_record(a, event("session_end", "rae"), NULL, NULL, 0), 4);
    run_until(f, entered_once, NULL);
    /* Chained on the lines in flight. */
    assert_int_equal(audit_record(a, event("call", "rae"), on_answer, &ans, 3), 5);
    assert_int_equal(audit_record(a, event("spawn", "rae"), NULL, NULL, 0), 6);
    held_release(1);
    turn(f, a);

    /* Both calls refused, half a write cut off again, nothing written after it. */
    assert_int_equal(ans.n, 3);
    assert_int_equal(ans.ok, 1);
    assert_int_equal(ans.failed, 2);
    assert_int_equal(ans.token[1], 2);
    assert_int_equal(ans.token[2], 3);
    assert_int_equal(atomic_load(&held.writes), 1);
    assert_false(audit_available(a));
    assert_int_equal(file_size(f->path), good);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 2);

    /* The disk is back: both kept records are re-chained after the last good line. */
    audit_set_io(a, NULL, NULL);
    assert_int_equal(audit_record(a, event("call", "rae"), on_answer, &ans, 4), 5);
    turn(f, a);
    assert_int_equal(ans.ok, 2);
    assert_true(audit_available(a));
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 5);
    v = line_json(f->path, 2);
    assert_string_equal(field(v, "event"), "session_end");
    cJSON_Delete(v);
    v = line_json(f->path, 3);
    assert_string_equal(field(v, "event"), "spawn");
    cJSON_Delete(v);
    audit_free(a);
    close(held.pipe[0]);
    close(held.pipe[1]);
}

static void reopen_and_free_wait_for_the_write_in_flight(void **state)
{
    struct fixture *f = *state;
    struct audit *a = open_audit(f, CONFIG_AUDIT_SYNC_ALWAYS);
    struct answers ans = {0};
    char old_last[65];

    held_reset();
    held.hold_write = true;
    audit_set_io(a, held_write_fn, held_sync_fn);
    assert_int_equal(audit_record(a, event("call", "sam"), on_answer, &ans, 1), 2);
    run_until(f, entered_once, NULL);
    assert_int_equal(audit_record(a, event("call", "sam"), on_answer, &ans, 2), 3);
    /* Released before the call; reopen waits for the write whether or not it is done yet. */
    held_release(2);
    assert_int_equal(audit_reopen(a, open_log(f->path2), f->err, sizeof f->err), 0);
    assert_int_equal(ans.ok, 2);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 3);
    last_hash(f->path, old_last);

    held.hold_write = false;
    audit_set_io(a, held_write_fn, held_sync_fn);
    turn(f, a);
    held.hold_write = true;
    audit_set_io(a, held_write_fn, held_sync_fn);
    assert_int_equal(audit_record(a, event("call", "sam"), on_answer, &ans, 3), 5);
    run_until(f, entered_once, NULL);
    assert_int_equal(audit_record(a, event("call", "sam"), on_answer, &ans, 4), 6);
    held_release(2);
    audit_free(a);
    assert_int_equal(ans.ok, 4);
    assert_int_equal(assert_chain(f->path2, 4, old_last), 3);
    close(held.pipe[0]);
    close(held.pipe[1]);
}

static void batch_mode_periodic_sync_runs_on_the_writer_thread(void **state)
{
    struct fixture *f = *state;
    struct audit *a =
        audit_new(f->base, open_log(f->path), CONFIG_AUDIT_SYNC_BATCH, 20, f->err, sizeof f->err);
    struct answers ans = {0};
    struct timeval ms10 = {0, 10000};
    struct event *tick;
    int ticks = 0;

    assert_non_null(a);
    held_reset();
    held.hold_sync = true;
    audit_set_io(a, held_write_fn, held_sync_fn);
    /* The audit_open record was written unsynced: the timer's fdatasync is held. */
    run_until(f, entered_once, NULL);
    assert_int_equal(atomic_load(&held.writes), 0);
    tick = evtimer_new(f->base, on_tick, &ticks);
    assert_non_null(tick);
    assert_int_equal(evtimer_add(tick, &ms10), 0);
    run_until(f, ticked, &ticks);
    event_free(tick);
    for (uint64_t i = 0; i < 5; i++)
        assert_true(audit_record(a, event("call", "tess"), on_answer, &ans, i) > 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(ans.n, 0);

    /* Released: the queued records go out in one write, acknowledged unsynced; the next
     * periodic sync covers them. */
    held_release(2);
    turn(f, a);
    assert_int_equal(ans.ok, 5);
    assert_int_equal(atomic_load(&held.writes), 1);
    run_until(f, synced_twice, NULL);
    turn(f, a);
    assert_int_equal(assert_chain(f->path, 1, ZERO_HASH), 6);
    audit_free(a);
    assert_int_equal(atomic_load(&held.syncs), 2);
    close(held.pipe[0]);
    close(held.pipe[1]);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static void helper_formats_time(void **state)
{
    struct timespec ts = {.tv_sec = 1795894200, .tv_nsec = 123456789}; /* 2026-11-28T19:30:00 */
    char out[AUDIT_TS_LEN + 1];

    (void)state;
    assert_int_equal(audit_format_ts(&ts, out), 0);
    assert_string_equal(out, "2026-11-28T19:30:00.123456Z");
    ts.tv_sec = 0;
    ts.tv_nsec = 0;
    assert_int_equal(audit_format_ts(&ts, out), 0);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
    ts.tv_sec = 253402300800; /* year 10000 */
    assert_int_equal(audit_format_ts(&ts, out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(first_record_opens_a_zero_anchored_chain),
        T(records_chain_and_callbacks_fire_after_the_write),
        T(one_turn_is_one_write_and_one_fdatasync),
        T(batch_mode_answers_after_the_write_and_syncs_on_a_timer),
        T(none_mode_never_syncs),
        T(free_writes_what_is_queued_and_answers),
        T(invalid_events_are_not_queued),
        T(oversized_records_are_cut_or_replaced),
        T(restart_continues_the_chain),
        T(torn_last_line_is_cut_off_and_reported),
        T(a_file_that_is_only_a_fragment_starts_over),
        T(a_file_that_is_not_an_audit_log_is_refused),
        T(a_tail_without_line_end_within_the_bound_is_refused),
        T(rotation_continues_the_chain_in_the_new_file),
        T(reopen_of_the_same_file_continues_it),
        T(reopen_onto_an_invalid_file_keeps_the_old_one),
        T(failed_write_refuses_leaves_no_torn_line_and_resumes),
        T(failed_fdatasync_refuses_and_cuts_the_batch_off),
        T(dev_full_refuses_and_a_good_file_resumes),
        T(idle_log_resumes_by_itself),
        T(retry_queue_is_bounded_and_gaps_are_recorded),
        T(a_held_sync_does_not_block_the_loop_and_what_queues_shares_one_write),
        T(a_failed_write_in_flight_fails_what_is_queued_behind_it),
        T(reopen_and_free_wait_for_the_write_in_flight),
        T(batch_mode_periodic_sync_runs_on_the_writer_thread),
        T(helper_formats_time),
#undef T
    };

    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
