/*
 * auditcli.c — `mcpvisor audit verify` and `mcpvisor audit query` over the files audit.c writes.
 *
 * verify walks the files in chain order (rotated ones first) and stops at the first line that
 * is not a record, does not follow the one before (seq + 1, prev = its SHA-256), or is torn.
 * The first line of the first file is the anchor: its prev is taken as given and printed, so a
 * chain verified in pieces can be joined by hand. A change to the very last line cannot show in
 * the chain: the last hash is printed so it can be compared with one kept elsewhere.
 *
 * query does not need an intact chain: it skips (and counts) unparseable lines. Rows are "call"
 * records, joined with their "result" record by call_id (or, for records without one, the
 * result's call_seq naming the call's seq): a first pass
 * indexes the results, a second one streams the calls, so the files may come in any order.
 *
 * Invariants: lines are read through a bounded buffer (AUDIT_MAX_LINE); everything printed from
 * a file is cut to printable ASCII, so a hostile record cannot forge rows or drive the terminal.
 */
#include "auditcli.h"

#include "jsonrpc.h"
#include "audit.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CLI_CELL_MAX    64 /* a table cell keeps this many characters */
#define CLI_SHOW_MAX    80 /* a value quoted in a message */
#define CLI_OUTCOME_MAX 64
#define CLI_NCOLS       9

/* ---- time --------------------------------------------------------------------------------- */

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n decimal digits at s; -1 when any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int audit_parse_time(const char *s, bool allow_date, int64_t *us)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
    int64_t frac = 0, t;
    size_t i;

    if (strlen(s) < 10 || (y = digits(s, 4)) < 0 || s[4] != '-' || (mo = digits(s + 5, 2)) < 0 ||
        s[7] != '-' || (d = digits(s + 8, 2)) < 0)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -1;
    i = 10;
    if (s[i] == '\0') {
        if (!allow_date)
            return -1;
        goto done;
    }
    if ((s[i] != 'T' && s[i] != 't') || strlen(s + i) < 9 || (h = digits(s + i + 1, 2)) < 0 ||
        s[i + 3] != ':' || (mi = digits(s + i + 4, 2)) < 0 || s[i + 6] != ':' ||
        (sec = digits(s + i + 7, 2)) < 0)
        return -1;
    if (h > 23 || mi > 59 || sec > 60) /* 60: a leap second */
        return -1;
    i += 9;
    if (s[i] == '.') {
        size_t n = 0;

        for (i++; s[i] >= '0' && s[i] <= '9'; i++, n++)
            if (n < 6)
                frac = frac * 10 + (s[i] - '0');
        if (n == 0)
            return -1;
        for (; n < 6; n++)
            frac *= 10;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        sign = s[i] == '+' ? 1 : -1;
        if ((oh = digits(s + i + 1, 2)) < 0 || s[i + 3] != ':' || (om = digits(s + i + 4, 2)) < 0 ||
            oh > 23 || om > 59)
            return -1;
        i += 6;
    } else {
        return -1;
    }
    if (s[i] != '\0')
        return -1;
done:
    t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    *us = t * 1000000 + frac;
    return 0;
}

/* ---- reading lines ------------------------------------------------------------------------ */

enum rd { RD_LINE, RD_EOF, RD_TORN, RD_LONG, RD_ERROR };

#define RD_CAP (2 * (size_t)AUDIT_MAX_LINE)

struct reader {
    FILE *fp;
    char *buf;
    size_t start, end;
    bool eof;
    uint64_t lineno; /* of the line last returned */
};

static int rd_fill(struct reader *r)
{
    size_t n;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    n = fread(r->buf + r->end, 1, RD_CAP - r->end, r->fp);
    if (n == 0) {
        if (ferror(r->fp))
            return -1;
        r->eof = true;
    }
    r->end += n;
    return 0;
}

/* Skips the rest of a line that is too long. */
static enum rd rd_skip(struct reader *r)
{
    for (;;) {
        char *nl;

        r->start = r->end = 0;
        if (rd_fill(r) == -1)
            return RD_ERROR;
        if ((nl = memchr(r->buf, '\n', r->end)) != NULL) {
            r->start = (size_t)(nl - r->buf) + 1;
            return RD_LONG;
        }
        if (r->eof)
            return RD_LONG;
    }
}

/*
 * The next line, without its "\n" (RD_LINE); the unterminated rest of the file (RD_TORN); a line
 * longer than AUDIT_MAX_LINE (RD_LONG, skipped); RD_EOF; RD_ERROR with errno.
 */
static enum rd rd_next(struct reader *r, const char **line, size_t *len)
{
    for (;;) {
        char *p = r->buf + r->start;
        char *nl = memchr(p, '\n', r->end - r->start);

        if (nl != NULL) {
            *line = p;
            *len = (size_t)(nl - p);
            r->start += *len + 1;
            r->lineno++;
            return *len + 1 > AUDIT_MAX_LINE ? RD_LONG : RD_LINE;
        }
        if (r->end - r->start >= AUDIT_MAX_LINE) {
            r->lineno++;
            return rd_skip(r);
        }
        if (r->eof) {
            if (r->end == r->start)
                return RD_EOF;
            *line = p;
            *len = r->end - r->start;
            r->start = r->end;
            r->lineno++;
            return RD_TORN;
        }
        if (rd_fill(r) == -1)
            return RD_ERROR;
    }
}

static int rd_open(struct reader *r, const char *path, FILE *errout)
{
    memset(r, 0, sizeof *r);
    if ((r->fp = fopen(path, "re")) == NULL) {
        fprintf(errout, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    if ((r->buf = malloc(RD_CAP)) == NULL) {
        fclose(r->fp);
        fprintf(errout, "%s: out of memory\n", path);
        return -1;
    }
    return 0;
}

static void rd_close(struct reader *r)
{
    if (r->fp != NULL)
        fclose(r->fp);
    free(r->buf);
    r->fp = NULL;
    r->buf = NULL;
}

/* ---- values ------------------------------------------------------------------------------- */

/* s (len bytes) as printable ASCII into out, cut to fit with "...". Returns out. */
static char *clean(const char *s, size_t len, char *out, size_t size)
{
    size_t i, n = 0;

    for (i = 0; i < len && n + 1 < size; i++) {
        unsigned char ch = (unsigned char)s[i];

        out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (i < len && size > 4)
        memcpy(out + size - 4, "...", 4);
    else
        out[n] = '\0';
    return out;
}

static const char *str_field(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON number that is a whole number from 0 to 2^53. */
static bool uint_field(const cJSON *obj, const char *key, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;

    if (!cJSON_IsNumber(v))
        return false;
    d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(uint64_t)d != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

/* A whole number that fits an int64_t (so the cast below is defined). */
static bool is_whole(double d)
{
    return d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(int64_t)d;
}

/* A cell: a string or a number, cleaned; "-" otherwise. */
static void cell(const cJSON *obj, const char *key, char *out, size_t size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (cJSON_IsString(v))
        clean(v->valuestring, strlen(v->valuestring), out, size);
    else if (cJSON_IsNumber(v) && is_whole(v->valuedouble))
        snprintf(out, size, "%" PRId64, (int64_t)v->valuedouble);
    else if (cJSON_IsNumber(v))
        snprintf(out, size, "%.3f", v->valuedouble);
    else
        snprintf(out, size, "-");
}

static bool is_hex64(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == AUDIT_HASH_HEX;
}

/* ---- verify ------------------------------------------------------------------------------- */

struct chain {
    bool have; /* a line was read */
    uint64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    const char *file; /* of that line */
    uint64_t lineno;
};

/* Checks one line against the chain; prints the break and returns -1, or advances the chain. */
static int verify_line(struct chain *ch, const char *file, uint64_t lineno, const char *line,
                       size_t len, FILE *out)
{
    char found[CLI_SHOW_MAX + 1];
    cJSON *v = cJSON_ParseWithLength(line, len);
    const char *prev = str_field(v, "prev"), *ts = str_field(v, "ts"), *event;
    int64_t us;
    uint64_t seq;
    int rc = -1;

    if (!cJSON_IsObject(v)) {
        fprintf(out, "%s:%" PRIu64 ": chain broken: not a JSON object\n", file, lineno);
        goto out;
    }
    if (!uint_field(v, "seq", &seq) || seq == 0) {
        fprintf(out, "%s:%" PRIu64 ": chain broken: no \"seq\" (a positive integer)\n", file,
                lineno);
        goto out;
    }
    if (prev == NULL || !is_hex64(prev)) {
        fprintf(out, "%s:%" PRIu64 ": chain broken: no \"prev\" (64 lower-case hex digits)\n", file,
                lineno);
        goto out;
    }
    if (ts == NULL || audit_parse_time(ts, false, &us) == -1) {
        fprintf(out, "%s:%" PRIu64 ": chain broken: \"ts\" is not an RFC 3339 time (found %s)\n",
                file, lineno, ts != NULL ? clean(ts, strlen(ts), found, sizeof found) : "nothing");
        goto out;
    }
    if ((event = str_field(v, "event")) == NULL || event[0] == '\0') {
        fprintf(out, "%s:%" PRIu64 ": chain broken: no \"event\"\n", file, lineno);
        goto out;
    }
    if (!ch->have) {
        fprintf(out, "%s:%" PRIu64 ": anchor: seq %" PRIu64 ", prev %s\n", file, lineno, seq, prev);
    } else if (seq != ch->seq + 1) {
        fprintf(out,
                "%s:%" PRIu64 ": chain broken: seq does not follow %s:%" PRIu64
                " (expected %" PRIu64 ", found %" PRIu64 ")\n",
                file, lineno, ch->file, ch->lineno, ch->seq + 1, seq);
        goto out;
    } else if (strcmp(prev, ch->hash) != 0) {
        fprintf(out,
                "%s:%" PRIu64 ": chain broken: prev is not the SHA-256 of %s:%" PRIu64
                " (expected %s, found %s)\n",
                file, lineno, ch->file, ch->lineno, ch->hash, prev);
        goto out;
    }
    ch->have = true;
    ch->seq = seq;
    ch->file = file;
    ch->lineno = lineno;
    util_sha256_hex(line, len, ch->hash);
    rc = 0;
out:
    cJSON_Delete(v);
    return rc;
}

static int verify(int nfiles, char **files, FILE *out, FILE *errout)
{
    struct chain ch = {0};
    struct reader r;

    for (int f = 0; f < nfiles; f++) {
        uint64_t count = 0, first = 0;
        const char *line;
        size_t len;
        enum rd e;
        int rc = AUDITCLI_EXIT_BROKEN;

        if (rd_open(&r, files[f], errout) == -1)
            return AUDITCLI_EXIT_ERROR;
        while ((e = rd_next(&r, &line, &len)) == RD_LINE) {
            if (verify_line(&ch, files[f], r.lineno, line, len, out) == -1)
                goto broken;
            if (count++ == 0)
                first = ch.seq;
        }
        switch (e) {
        case RD_EOF:
            break;
        case RD_TORN:
            fprintf(out,
                    "%s:%" PRIu64 ": chain broken: torn record: the last line has no line end "
                    "(%zu bytes)\n",
                    files[f], r.lineno, len);
            goto broken;
        case RD_LONG:
            fprintf(out, "%s:%" PRIu64 ": chain broken: line longer than %u bytes\n", files[f],
                    r.lineno, AUDIT_MAX_LINE);
            goto broken;
        default:
            fprintf(errout, "%s: read error: %s\n", files[f], strerror(errno));
            rc = AUDITCLI_EXIT_ERROR;
            goto broken;
        }
        if (count == 0)
            fprintf(out, "%s: ok: 0 records\n", files[f]);
        else
            fprintf(out,
                    "%s: ok: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 ", last hash %s\n",
                    files[f], count, first, ch.seq, ch.hash);
        rd_close(&r);
        continue;
    broken:
        rd_close(&r);
        return rc;
    }
    return AUDITCLI_EXIT_OK;
}

/* ---- query -------------------------------------------------------------------------------- */

struct query {
    const char *user, *agent, *tool, *tenant, *server;
    bool has_since, has_until;
    int64_t since, until; /* since <= ts < until */
    bool json;
    char **files;
    int nfiles;
};

#define CLI_KEY_MAX 80

struct result {
    char key[CLI_KEY_MAX]; /* the call's call_id, or "#<seq>" for records without one */
    char outcome[CLI_OUTCOME_MAX];
    bool has_latency;
    double latency_ms;
};

struct results {
    struct result *v;
    size_t n, cap;
};

struct row {
    char *cells[CLI_NCOLS];
};

struct rows {
    struct row *v;
    size_t n, cap;
    size_t width[CLI_NCOLS];
};

static const char *const COLUMNS[CLI_NCOLS] = {
    "TIME", "TENANT", "USER", "AGENT", "SERVER", "TOOL", "VERSION", "OUTCOME", "LATENCY_MS",
};

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    size_t c;
    void *p;

    if (n < *cap)
        return 0;
    c = *cap ? 2 * *cap : 256;
    if ((p = reallocarray(*v, c, size)) == NULL)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

/* A filter on a field that the record lacks never matches. */
static bool field_matches(const cJSON *rec, const char *key, const char *want, bool lenient)
{
    const char *got;

    if (want == NULL)
        return true;
    got = str_field(rec, key);
    if (got == NULL)
        return lenient;
    return strcmp(got, want) == 0;
}

/* lenient: a field the record lacks passes (results need not repeat the call's fields). */
static bool principal_matches(const struct query *q, const cJSON *rec, bool lenient)
{
    return field_matches(rec, "user", q->user, lenient) &&
           field_matches(rec, "agent", q->agent, lenient) &&
           field_matches(rec, "tool", q->tool, lenient) &&
           field_matches(rec, "tenant", q->tenant, lenient) &&
           field_matches(rec, "server", q->server, lenient);
}

static int cmp_result(const void *a, const void *b)
{
    const struct result *x = a, *y = b;

    return strcmp(x->key, y->key);
}

/* How a call and its result find each other: call_id (stable even when a failed write made
 * the log number records again), else the call's seq. false when the record has neither. */
static bool join_key(const cJSON *rec, const char *seq_field, char out[CLI_KEY_MAX])
{
    const char *id = str_field(rec, "call_id");
    uint64_t seq;
    if (id != NULL && strlen(id) < CLI_KEY_MAX) {
        snprintf(out, CLI_KEY_MAX, "%s", id);
        return true;
    }
    if (!uint_field(rec, seq_field, &seq))
        return false;
    snprintf(out, CLI_KEY_MAX, "#%" PRIu64, seq);
    return true;
}

/* "ok", the typed error, or the outcome as written. */
static void result_outcome(const cJSON *rec, char *out, size_t size)
{
    const char *outcome = str_field(rec, "outcome"), *type = str_field(rec, "error_type");

    if (outcome != NULL && strcmp(outcome, "ok") == 0)
        snprintf(out, size, "ok");
    else if (type != NULL && type[0] != '\0')
        clean(type, strlen(type), out, size);
    else if (outcome != NULL && outcome[0] != '\0')
        clean(outcome, strlen(outcome), out, size);
    else
        snprintf(out, size, "-");
}

/* A line's record when it parses as an object with a string "event"; else NULL. */
static cJSON *parse_record(const char *line, size_t len, const char **event)
{
    cJSON *v = cJSON_ParseWithLength(line, len);

    if (!cJSON_IsObject(v) || (*event = str_field(v, "event")) == NULL) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* Pass 1: every result that may belong to a matching call, sorted by call_seq. */
static int index_results(const struct query *q, struct results *res, FILE *errout)
{
    struct reader r;

    for (int f = 0; f < q->nfiles; f++) {
        const char *line, *event;
        size_t len;
        enum rd e;

        if (rd_open(&r, q->files[f], errout) == -1)
            return -1;
        while ((e = rd_next(&r, &line, &len)) != RD_EOF) {
            struct result *x;
            const cJSON *lat;
            cJSON *v;
            char key[CLI_KEY_MAX];

            if (e == RD_ERROR) {
                fprintf(errout, "%s: read error: %s\n", q->files[f], strerror(errno));
                rd_close(&r);
                return -1;
            }
            if (e != RD_LINE || (v = parse_record(line, len, &event)) == NULL)
                continue;
            if (strcmp(event, "result") != 0 || !join_key(v, "call_seq", key) ||
                !principal_matches(q, v, true)) {
                cJSON_Delete(v);
                continue;
            }
            if (grow((void **)&res->v, &res->cap, res->n, sizeof *res->v) == -1) {
                cJSON_Delete(v);
                rd_close(&r);
                fprintf(errout, "audit query: out of memory\n");
                return -1;
            }
            x = &res->v[res->n++];
            memcpy(x->key, key, sizeof(x->key));
            result_outcome(v, x->outcome, sizeof x->outcome);
            lat = cJSON_GetObjectItemCaseSensitive(v, "latency_ms");
            x->has_latency = cJSON_IsNumber(lat);
            x->latency_ms = x->has_latency ? lat->valuedouble : 0;
            cJSON_Delete(v);
        }
        rd_close(&r);
    }
    if (res->n > 0)
        qsort(res->v, res->n, sizeof *res->v, cmp_result);
    return 0;
}

static bool time_matches(const struct query *q, const cJSON *rec)
{
    const char *ts;
    int64_t us;

    if (!q->has_since && !q->has_until)
        return true;
    if ((ts = str_field(rec, "ts")) == NULL || audit_parse_time(ts, false, &us) == -1)
        return false;
    return (!q->has_since || us >= q->since) && (!q->has_until || us < q->until);
}

static void format_latency(const struct result *x, char *out, size_t size)
{
    if (x == NULL || !x->has_latency)
        snprintf(out, size, "-");
    else if (is_whole(x->latency_ms))
        snprintf(out, size, "%" PRId64, (int64_t)x->latency_ms);
    else
        snprintf(out, size, "%.3f", x->latency_ms);
}

/* --json: the call record plus "outcome" and "latency_ms" (null without a result). */
static int print_json(cJSON *call, const struct result *x, FILE *out)
{
    char *text;

    cJSON_DeleteItemFromObjectCaseSensitive(call, "outcome");
    cJSON_DeleteItemFromObjectCaseSensitive(call, "latency_ms");
    if ((x != NULL ? cJSON_AddStringToObject(call, "outcome", x->outcome)
                   : cJSON_AddNullToObject(call, "outcome")) == NULL ||
        (x != NULL && x->has_latency ? cJSON_AddNumberToObject(call, "latency_ms", x->latency_ms)
                                     : cJSON_AddNullToObject(call, "latency_ms")) == NULL ||
        (text = cJSON_PrintUnformatted(call)) == NULL)
        return -1;
    /* Plain ASCII: a record is untrusted text and this goes to a terminal. */
    size_t n;
    char *ascii = jsonrpc_ascii(text, strlen(text), &n);
    free(text);
    if (ascii == NULL)
        return -1;
    fprintf(out, "%s\n", ascii);
    free(ascii);
    return 0;
}

static int add_row(struct rows *rows, const cJSON *call, const struct result *x)
{
    static const char *const keys[] = {"ts",     "tenant", "user",        "agent",
                                       "server", "tool",   "tool_version"};
    char buf[CLI_NCOLS][CLI_CELL_MAX + 1];
    struct row *row;

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cell(call, keys[i], buf[i], sizeof buf[i]);
    if (str_field(call, "tool") == NULL) /* resources/read, prompts/get */
        cell(call, "method", buf[5], sizeof buf[5]);
    snprintf(buf[7], sizeof buf[7], "%s", x != NULL ? x->outcome : "-");
    format_latency(x, buf[8], sizeof buf[8]);
    if (grow((void **)&rows->v, &rows->cap, rows->n, sizeof *rows->v) == -1)
        return -1;
    row = &rows->v[rows->n];
    for (size_t i = 0; i < CLI_NCOLS; i++) {
        size_t w = strlen(buf[i]);

        if ((row->cells[i] = strdup(buf[i])) == NULL) {
            while (i-- > 0)
                free(row->cells[i]);
            return -1;
        }
        if (w > rows->width[i])
            rows->width[i] = w;
    }
    rows->n++;
    return 0;
}

static void print_rows(const struct rows *rows, FILE *out)
{
    for (size_t r = 0; r <= rows->n; r++) {
        for (size_t i = 0; i < CLI_NCOLS; i++) {
            const char *s = r == 0 ? COLUMNS[i] : rows->v[r - 1].cells[i];

            if (i + 1 < CLI_NCOLS)
                fprintf(out, "%-*s  ", (int)rows->width[i], s);
            else
                fprintf(out, "%s\n", s);
        }
    }
}

/* Pass 2: the matching calls, printed as they come (--json) or kept for the table. */
static int scan_calls(const struct query *q, const struct results *res, struct rows *rows,
                      FILE *out, FILE *errout)
{
    struct reader r;

    for (int f = 0; f < q->nfiles; f++) {
        uint64_t skipped = 0, first_bad = 0;
        const char *line, *event;
        size_t len;
        enum rd e;

        if (rd_open(&r, q->files[f], errout) == -1)
            return -1;
        while ((e = rd_next(&r, &line, &len)) != RD_EOF) {
            const struct result *x = NULL;
            struct result key;
            cJSON *v;
            int rc = 0;

            if (e == RD_ERROR) {
                fprintf(errout, "%s: read error: %s\n", q->files[f], strerror(errno));
                rd_close(&r);
                return -1;
            }
            if (e != RD_LINE || (v = parse_record(line, len, &event)) == NULL) {
                if (skipped++ == 0)
                    first_bad = r.lineno;
                continue;
            }
            if (strcmp(event, "call") != 0 || !principal_matches(q, v, false) ||
                !time_matches(q, v)) {
                cJSON_Delete(v);
                continue;
            }
            if (res->n > 0 && join_key(v, "seq", key.key))
                x = bsearch(&key, res->v, res->n, sizeof *res->v, cmp_result);
            rc = q->json ? print_json(v, x, out) : add_row(rows, v, x);
            cJSON_Delete(v);
            if (rc == -1) {
                fprintf(errout, "audit query: out of memory\n");
                rd_close(&r);
                return -1;
            }
        }
        if (skipped > 0)
            fprintf(errout,
                    "audit query: %s: skipped %" PRIu64
                    " unparseable lines (the first at line %" PRIu64 ")\n",
                    q->files[f], skipped, first_bad);
        rd_close(&r);
    }
    return 0;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: mcpvisor audit verify FILE...\n"
                "       mcpvisor audit query FILE... [--tenant T] [--user U] [--agent A] "
                "[--tool T]\n"
                "                                    [--server S] [--since TIME] [--until TIME] "
                "[--json]\n"
                "FILEs in chain order (rotated ones first). TIME: RFC 3339 "
                "(2026-11-21T10:00:00Z) or a\n"
                "date (2026-11-21, midnight UTC); --since is inclusive, --until exclusive.\n");
}

/* Options may come as "--user U" or "--user=U", before, between or after the files. */
static int parse_query_args(int argc, char **argv, struct query *q, FILE *errout)
{
    static const char *const names[] = {"user",   "agent", "tool", "tenant",
                                        "server", "since", "until"};
    bool files_only = false;

    if ((q->files = calloc((size_t)argc + 1, sizeof *q->files)) == NULL)
        return -1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        size_t k, nlen;

        if (files_only || strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (!files_only && strcmp(arg, "--") == 0) {
                files_only = true;
                continue;
            }
            q->files[q->nfiles++] = argv[i];
            continue;
        }
        arg += 2;
        if (strcmp(arg, "json") == 0) {
            q->json = true;
            continue;
        }
        eq = strchr(arg, '=');
        nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        for (k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strlen(names[k]) == nlen && strncmp(arg, names[k], nlen) == 0)
                break;
        if (k == sizeof names / sizeof names[0]) {
            fprintf(errout, "audit query: unknown option --%s\n", arg);
            return -1;
        }
        if (eq != NULL)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(errout, "audit query: --%s needs a value\n", names[k]);
            return -1;
        }
        switch (k) {
        case 0:
            q->user = val;
            break;
        case 1:
            q->agent = val;
            break;
        case 2:
            q->tool = val;
            break;
        case 3:
            q->tenant = val;
            break;
        case 4:
            q->server = val;
            break;
        default:
            if (audit_parse_time(val, true, k == 5 ? &q->since : &q->until) == -1) {
                fprintf(errout,
                        "audit query: --%s: expected an RFC 3339 time (2026-11-21T10:00:00Z) or a "
                        "date (2026-11-21)\n",
                        names[k]);
                return -1;
            }
            if (k == 5)
                q->has_since = true;
            else
                q->has_until = true;
        }
    }
    if (q->nfiles == 0) {
        fprintf(errout, "audit query: no FILE given\n");
        return -1;
    }
    return 0;
}

static int query(int argc, char **argv, FILE *out, FILE *errout)
{
    struct query q = {0};
    struct results res = {0};
    struct rows rows = {0};
    int rc = AUDITCLI_EXIT_ERROR;

    for (size_t i = 0; i < CLI_NCOLS; i++)
        rows.width[i] = strlen(COLUMNS[i]);
    if (parse_query_args(argc, argv, &q, errout) == -1) {
        usage(errout);
        goto out;
    }
    if (index_results(&q, &res, errout) == -1 || scan_calls(&q, &res, &rows, out, errout) == -1)
        goto out;
    if (!q.json)
        print_rows(&rows, out);
    rc = AUDITCLI_EXIT_OK;
out:
    for (size_t r = 0; r < rows.n; r++)
        for (size_t i = 0; i < CLI_NCOLS; i++)
            free(rows.v[r].cells[i]);
    free(rows.v);
    free(res.v);
    free(q.files);
    return rc;
}

int audit_cli(int argc, char **argv, FILE *out, FILE *errout)
{
    if (argc >= 1 && (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
                      strcmp(argv[0], "-h") == 0)) {
        usage(out);
        return AUDITCLI_EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[0], "verify") == 0) {
        for (int i = 1; i < argc; i++)
            if (argv[i][0] == '-' && argv[i][1] != '\0') {
                fprintf(errout, "audit verify: unknown option %s\n", argv[i]);
                usage(errout);
                return AUDITCLI_EXIT_ERROR;
            }
        return verify(argc - 1, argv + 1, out, errout);
    }
    if (argc >= 1 && strcmp(argv[0], "query") == 0)
        return query(argc - 1, argv + 1, out, errout);
    usage(errout);
    return AUDITCLI_EXIT_ERROR;
}
