/*
 * audit.c — the hash-chained audit log (DESIGN.md, "Audit log"), written by the front on an fd
 * the parent opened for it.
 *
 * Chain: every record is one line {"seq":N,"ts":...,"prev":H,"event":...,...}\n where H is the
 * SHA-256 of the previous line without its "\n". seq and prev are given when a record is queued
 * (the caller gets its seq at once, e.g. for a result's call_seq), so the queue is a run of
 * finished lines, hashed as they are made.
 *
 * Writer thread: the write(2) and fdatasync(2) run on one thread per log, so a slow disk never
 * stalls the event loop (and every other client of the front) — the loop only builds lines and
 * the chain. At most one job is in flight: the loop hands over the whole queue (its buffer and
 * records) and starts an empty one; the thread cuts off what a failed write left, takes the size
 * for its own cut-back (fstat), writes, syncs as the mode says and signals the loop through an
 * eventfd (ev_done). Only then does the loop update good_*, availability and the sync timer and
 * run the callbacks. While a job is in flight the thread alone touches fd, regular, good_size,
 * cut_pending and the injected I/O; the loop only the queue.
 *
 * Group commit: the first record queued in a loop turn makes ev_flush active; libevent runs it
 * after the events already active in that turn, so their records share one job. Whatever queues
 * while a job is in flight goes out in the next one, started as soon as the job is back: all the
 * records that arrive during one fdatasync share the next write and fdatasync, so with sync
 * "always" a record waits at most about two syncs, and throughput is not capped by the disk's
 * sync rate. "batch" acknowledges after the write and fdatasyncs at most every batch_ms
 * (ev_sync: a sync-only job, or folded into the next write when one is in flight): a power loss
 * or kernel crash can lose the records of the last batch_ms (a crash of mcpvisor alone loses
 * nothing written). "none" never syncs: the kernel's writeback decides the window.
 *
 * Failure: when a write or a sync fails, the file is cut back (ftruncate) to its size before the
 * batch, so no torn or unsynced line stays and the chain goes on from the last good line; the
 * queued seqs are handed out again. The records queued behind the failed job were chained on its
 * lines, so they fail with it. Callers waiting on a callback hear ok=false (their calls are
 * refused, never retried). Records nobody waits for (session_end, spawn...) go to a bounded retry
 * queue, re-chained in front of the next record (keeping their ts, so ts may step back); what
 * overflows it is counted and reported by an "audit_gap" record. While unavailable, ev_retry tries
 * again every AUDIT_RETRY_MS (writing an "audit_resumed" record when nothing else waits), so
 * service resumes on its own.
 *
 * audit_new, audit_reopen and audit_free are synchronous: they wait for the job in flight (bounded
 * by its I/O), then write what is queued through the thread and wait for that too.
 *
 * Invariants: the file only ever holds whole lines; good_* describe its end; seq/hash describe
 * the end of the queue. Never opens a path; the loop never blocks except in audit_new, audit_reopen
 * and audit_free (waiting for the writer, and the tail read); one writer per file (the size kept
 * for the cut-back is taken from fstat just before each write). Memory: the queue is bounded by
 * AUDIT_MAX_PENDING, and so is the job in flight.
 */
#include "audit.h"

#include "jsonrpc.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUDIT_PREFIX_MAX  160 /* {"seq":<20>,"ts":"<27>","prev":"<64>", is 137 bytes */
#define AUDIT_SEQ_MAX     (UINT64_C(1) << 53) /* readers hold numbers as doubles */
#define AUDIT_CUT_MARK    "...[truncated]"
#define AUDIT_ERROR_LOG_S 60              /* at most one error line per minute */
#define AUDIT_NAME_KEEP   128             /* an oversize record's orig_event */
#define AUDIT_SPARE_KEEP  (1024u * 1024u) /* a written buffer up to this is reused */

static const char AUDIT_ZERO_HASH[] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* One line of the queue. */
struct audit_rec {
    uint64_t seq;
    size_t off, len; /* in a->batch, "\n" included */
    size_t rest_off; /* where the event's own fields start: what a retry keeps */
    char ts[AUDIT_TS_LEN + 1];
    audit_cb cb;
    void *ctx;
    uint64_t token;
};

/* A failed record without a callback, waiting to be chained again. */
struct audit_retry {
    struct audit_retry *next;
    char ts[AUDIT_TS_LEN + 1];
    size_t len;
    char rest[]; /* the event's fields after its "{", the "}" included */
};

/* The records of one group commit, detached from the queue before their callbacks run. */
struct audit_batch {
    struct audit_rec *recs;
    size_t n;
    bool ok;
};

/* The callbacks owed by what reopen or free wait for, run once the state is settled. */
struct audit_acks {
    struct audit_batch b[4];
    size_t n;
};

/*
 * One job of the writer thread. The loop fills the first part before handing it over; the
 * thread fills the outcome before handing it back.
 */
struct audit_job {
    const char *buf;
    size_t len; /* 0: an fdatasync alone */
    bool sync;
    bool ok;
    const char *op; /* what failed */
    int err;
    int cut_err; /* the cut-back after the failure failed too */
};

enum audit_job_state { JOB_IDLE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* What the tail of a file says. */
struct audit_tail {
    bool regular; /* sizes, reads and ftruncate apply */
    bool empty;   /* no complete line (after cutting off a fragment) */
    uint64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    off_t size;      /* up to the end of the last complete line */
    off_t truncated; /* bytes of a torn last line */
};

struct audit {
    struct event_base *base;
    int fd;
    bool regular;
    enum config_audit_sync sync;
    uint32_t batch_ms;

    /* the file ends with line good_seq, hashed good_hash, at good_size; fd, regular, good_size
     * and cut_pending belong to the writer thread while a job is in flight */
    uint64_t good_seq;
    char good_hash[AUDIT_HASH_HEX + 1];
    off_t good_size;
    bool cut_pending; /* a failed write is still to be cut off */

    /* the queue ends with line seq, hashed hash */
    uint64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    struct strbuf batch;
    struct audit_rec *recs;
    size_t nrecs, caprecs;

    struct audit_retry *retry_head, *retry_tail;
    size_t nretry, retry_bytes;
    uint64_t dropped; /* retries dropped, not yet reported by an audit_gap record */

    bool available;
    bool closing;
    bool unsynced;    /* batch: written since the last fdatasync */
    bool sync_failed; /* the next write is synced before it counts */
    uint64_t refused; /* calls refused since the log became unavailable */
    int last_errno;
    bool logged_error;
    int64_t last_error_log_ms;
    uint64_t errors_not_logged;

    struct event *ev_flush, *ev_sync, *ev_retry;

    /* Used by the writer thread during a job, by the loop only between jobs. */
    ssize_t (*write_fn)(int fd, const void *buf, size_t len);
    int (*sync_fn)(int fd);

    /* The writer thread; state and stop under mu, job handed over with state. */
    pthread_t thread;
    bool thread_started, sync_init;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum audit_job_state state;
    bool stop;
    struct audit_job job;
    int efd; /* the thread's "job done", read by ev_done on the loop */
    struct event *ev_done;

    /* Loop only: the job in flight, and what its success makes of the chain's end. */
    bool busy;
    struct strbuf wbuf; /* its lines */
    struct audit_batch wrecs;
    uint64_t wseq;
    char whash[AUDIT_HASH_HEX + 1];
    bool wunsynced;      /* batch: earlier acknowledged writes were unsynced when it left */
    bool sync_wanted;    /* batch: the periodic fdatasync is due */
    struct strbuf spare; /* the previous job's buffer, the next queue's */
};

/* ---- pure helpers ------------------------------------------------------------------------- */

int audit_format_ts(const struct timespec *ts, char out[AUDIT_TS_LEN + 1])
{
    struct tm tm;
    time_t t = ts->tv_sec;
    long us = ts->tv_nsec / 1000;
    int n;

    if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L || gmtime_r(&t, &tm) == NULL ||
        tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return -1;
    n = snprintf(out, AUDIT_TS_LEN + 1, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    return n == AUDIT_TS_LEN ? 0 : -1;
}

/* ---- making a line ------------------------------------------------------------------------ */

/* What the cut must never reach: a SHA-256 kept beside a value that may be cut. */
_Static_assert(UTIL_SHA256_HEX <= AUDIT_CUT_STRING, "a recorded hash would be cut");

/* Cuts, in place, every string of v longer than AUDIT_CUT_STRING bytes (on a UTF-8 boundary). */
static void cut_strings(cJSON *v)
{
    const size_t mark = sizeof AUDIT_CUT_MARK - 1;

    for (cJSON *it = v; it != NULL; it = it->next) {
        if (it->child != NULL)
            cut_strings(it->child);
        if (!cJSON_IsString(it) || (it->type & cJSON_IsReference) || it->valuestring == NULL)
            continue;
        size_t len = strlen(it->valuestring), keep = AUDIT_CUT_STRING;
        if (len <= AUDIT_CUT_STRING + mark)
            continue;
        while (keep > 0 && ((unsigned char)it->valuestring[keep] & 0xc0) == 0x80)
            keep--;
        memcpy(it->valuestring + keep, AUDIT_CUT_MARK, mark + 1);
    }
}

/* The event's text, or NULL when event is not an object with a non-empty string "event". */
/* The record as one line of plain ASCII: anything else inside strings is \u-escaped (see
 * jsonrpc_ascii), so `tail -f` of the log cannot be driven by what a caller or server sent. */
static char *print_ascii(const cJSON *v)
{
    char *text = cJSON_PrintUnformatted(v);
    size_t n;
    if (text == NULL)
        return NULL;
    char *ascii = jsonrpc_ascii(text, strlen(text), &n);
    cJSON_free(text);
    return ascii;
}

static char *event_text(cJSON *event, size_t *len)
{
    const size_t room = AUDIT_MAX_LINE - AUDIT_PREFIX_MAX;
    static const char *const ours[] = {"seq", "ts", "prev"};
    cJSON *name, *big = NULL;
    char *text, *ev_name = NULL;
    size_t orig;

    name = cJSON_GetObjectItemCaseSensitive(event, "event");
    if (!cJSON_IsObject(event) || !cJSON_IsString(name) || name->valuestring[0] == '\0')
        return NULL;
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        while (cJSON_GetObjectItemCaseSensitive(event, ours[i]) != NULL)
            cJSON_DeleteItemFromObjectCaseSensitive(event, ours[i]);
    /* "event" first, so a line reads seq, ts, prev, event, fields. */
    name = cJSON_DetachItemFromObjectCaseSensitive(event, "event");
    if (name == NULL || !cJSON_InsertItemInArray(event, 0, name)) {
        cJSON_Delete(name);
        return NULL;
    }
    if ((text = print_ascii(event)) == NULL)
        return NULL;
    if ((orig = strlen(text)) > room) {
        free(text);
        cut_strings(event);
        if ((text = print_ascii(event)) == NULL)
            return NULL;
    }
    if (strlen(text) > room) {
        free(text);
        name = cJSON_GetObjectItemCaseSensitive(event, "event");
        if ((ev_name = strndup(name->valuestring, AUDIT_NAME_KEEP)) == NULL ||
            (big = cJSON_CreateObject()) == NULL ||
            cJSON_AddStringToObject(big, "event", "audit_oversize") == NULL ||
            cJSON_AddStringToObject(big, "orig_event", ev_name) == NULL ||
            cJSON_AddNumberToObject(big, "orig_bytes", (double)orig) == NULL)
            text = NULL;
        else
            text = print_ascii(big);
        cJSON_Delete(big);
        free(ev_name);
        if (text == NULL)
            return NULL;
    }
    *len = strlen(text);
    /* cJSON escapes control characters; a raw newline would split the record. */
    if (*len < 2 || text[0] != '{' || memchr(text, '\n', *len) != NULL) {
        free(text);
        return NULL;
    }
    return text;
}

static void flush_soon(struct audit *a)
{
    if (!a->closing)
        event_active(a->ev_flush, EV_TIMEOUT, 0);
}

/*
 * Chains one line {"seq":..,"ts":ts,"prev":..,<rest> onto the queue. rest: the event's text
 * after its "{". Returns the seq, or 0 when the line or the queue would exceed its ceiling or
 * memory runs out (then nothing changed).
 */
static uint64_t enqueue_rest(struct audit *a, const char *ts, const char *rest, size_t restlen,
                             audit_cb cb, void *ctx, uint64_t token)
{
    char prefix[AUDIT_PREFIX_MAX];
    uint64_t seq = a->seq + 1;
    size_t off = a->batch.len, linelen;
    struct audit_rec *r;
    int n;

    if (a->seq >= AUDIT_SEQ_MAX)
        return 0;
    n = snprintf(prefix, sizeof prefix, "{\"seq\":%" PRIu64 ",\"ts\":\"%s\",\"prev\":\"%s\",", seq,
                 ts, a->hash);
    if (n < 0 || (size_t)n >= sizeof prefix || restlen > AUDIT_MAX_LINE)
        return 0;
    linelen = (size_t)n + restlen + 1;
    if (linelen > AUDIT_MAX_LINE || linelen > AUDIT_MAX_PENDING - a->batch.len)
        return 0;
    if (a->nrecs == a->caprecs) {
        size_t cap = a->caprecs ? 2 * a->caprecs : 64;
        struct audit_rec *p = reallocarray(a->recs, cap, sizeof *p);

        if (p == NULL)
            return 0;
        a->recs = p;
        a->caprecs = cap;
    }
    strbuf_put(&a->batch, prefix, (size_t)n);
    strbuf_put(&a->batch, rest, restlen);
    strbuf_putc(&a->batch, '\n');
    if (a->batch.failed) {
        /* strbuf leaves p intact when it fails: drop the partial line and carry on. */
        a->batch.failed = false;
        a->batch.len = off;
        if (a->batch.p != NULL)
            a->batch.p[off] = '\0';
        return 0;
    }
    util_sha256_hex(a->batch.p + off, linelen - 1, a->hash);
    a->seq = seq;
    r = &a->recs[a->nrecs++];
    r->seq = seq;
    r->off = off;
    r->len = linelen;
    r->rest_off = off + (size_t)n;
    memcpy(r->ts, ts, AUDIT_TS_LEN + 1);
    r->cb = cb;
    r->ctx = ctx;
    r->token = token;
    if (a->nrecs == 1)
        flush_soon(a);
    return seq;
}

/* Queues event (ownership taken) stamped now. */
static uint64_t enqueue_event(struct audit *a, cJSON *event, audit_cb cb, void *ctx, uint64_t token)
{
    char ts[AUDIT_TS_LEN + 1];
    struct timespec now;
    uint64_t seq = 0;
    size_t len;
    char *text = event != NULL ? event_text(event, &len) : NULL;

    cJSON_Delete(event);
    if (text != NULL) {
        clock_gettime(CLOCK_REALTIME, &now);
        if (audit_format_ts(&now, ts) == 0)
            seq = enqueue_rest(a, ts, text + 1, len - 1, cb, ctx, token);
    }
    free(text);
    return seq;
}

/* ---- the retry queue ---------------------------------------------------------------------- */

static void retry_drop_head(struct audit *a)
{
    struct audit_retry *r = a->retry_head;

    a->retry_head = r->next;
    if (a->retry_head == NULL)
        a->retry_tail = NULL;
    a->nretry--;
    a->retry_bytes -= r->len;
    free(r);
}

static void retry_push(struct audit *a, const char *ts, const char *rest, size_t len)
{
    struct audit_retry *r;

    if (len > AUDIT_RETRY_MAX_BYTES || (r = malloc(sizeof *r + len)) == NULL) {
        a->dropped++;
        return;
    }
    while (a->retry_head != NULL &&
           (a->nretry >= AUDIT_RETRY_MAX || a->retry_bytes + len > AUDIT_RETRY_MAX_BYTES)) {
        retry_drop_head(a);
        a->dropped++;
    }
    memcpy(r->ts, ts, sizeof r->ts);
    memcpy(r->rest, rest, len);
    r->len = len;
    r->next = NULL;
    if (a->retry_tail != NULL)
        a->retry_tail->next = r;
    else
        a->retry_head = r;
    a->retry_tail = r;
    a->nretry++;
    a->retry_bytes += len;
}

/* Chains the waiting retries (after an audit_gap record for the dropped ones) onto the queue. */
static void requeue_retries(struct audit *a)
{
    if (a->dropped > 0) {
        cJSON *gap = cJSON_CreateObject();

        if (gap != NULL && cJSON_AddStringToObject(gap, "event", "audit_gap") != NULL &&
            cJSON_AddNumberToObject(gap, "dropped", (double)a->dropped) != NULL) {
            if (enqueue_event(a, gap, NULL, NULL, 0) != 0)
                a->dropped = 0;
        } else {
            cJSON_Delete(gap);
        }
    }
    while (a->retry_head != NULL) {
        struct audit_retry *r = a->retry_head;

        if (enqueue_rest(a, r->ts, r->rest, r->len, NULL, NULL, 0) == 0)
            break;
        retry_drop_head(a);
    }
}

/* ---- writing ------------------------------------------------------------------------------ */

static void arm_retry(struct audit *a, uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    if (!a->closing)
        evtimer_add(a->ev_retry, &tv);
}

static void log_failure(struct audit *a, const char *op, int err)
{
    int64_t now = util_mono_ms();

    if (a->logged_error && now - a->last_error_log_ms < AUDIT_ERROR_LOG_S * 1000) {
        a->errors_not_logged++;
        return;
    }
    log_error("audit_write_failed op=%s error=\"%s\" failures_not_logged=%" PRIu64
              " retry_queue=%zu dropped=%" PRIu64,
              op, strerror(err), a->errors_not_logged, a->nretry, a->dropped);
    a->logged_error = true;
    a->last_error_log_ms = now;
    a->errors_not_logged = 0;
}

static void mark_unavailable(struct audit *a, const char *op, int err)
{
    a->available = false;
    a->last_errno = err;
    log_failure(a, op, err);
    arm_retry(a, AUDIT_RETRY_MS);
}

/* Writer thread: cuts the file back to the end of its last good line. */
static int cut_back(struct audit *a)
{
    if (!a->regular) {
        a->cut_pending = false;
        return 0;
    }
    if (ftruncate(a->fd, a->good_size) == -1)
        return -1;
    a->cut_pending = false;
    return 0;
}

/* Writer thread. */
static int write_all(struct audit *a, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = a->write_fn(a->fd, p, len);

        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Writer thread: one job's I/O. A write first cuts off what a failed write left, then takes the
 * file's size (for its own cut-back); a failed write or sync cuts the file back to that size, so
 * the file only ever holds whole lines.
 */
static void job_run(struct audit *a, struct audit_job *j)
{
    struct stat st;

    j->ok = false;
    j->op = NULL;
    j->err = 0;
    j->cut_err = 0;
    if (j->len > 0) {
        if (a->cut_pending && cut_back(a) == -1) {
            j->op = "ftruncate";
            goto failed;
        }
        if (a->regular) {
            if (fstat(a->fd, &st) == -1) {
                j->op = "fstat";
                goto failed;
            }
            a->good_size = st.st_size;
        }
        if (write_all(a, j->buf, j->len) == -1) {
            j->op = "write";
            goto failed;
        }
    }
    if (j->sync && a->sync_fn(a->fd) == -1) {
        j->op = "fdatasync";
        goto failed;
    }
    a->good_size += (off_t)j->len;
    j->ok = true;
    return;

failed:
    j->err = errno;
    if (j->len > 0 && a->regular) {
        a->cut_pending = true;
        if (cut_back(a) == -1)
            j->cut_err = errno;
    }
}

static void *writer_main(void *arg)
{
    struct audit *a = arg;
    const uint64_t one = 1;

    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->state != JOB_QUEUED && !a->stop)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->state != JOB_QUEUED)
            break;
        a->state = JOB_RUNNING;
        pthread_mutex_unlock(&a->mu);
        job_run(a, &a->job);
        pthread_mutex_lock(&a->mu);
        a->state = JOB_DONE;
        pthread_cond_broadcast(&a->cv);
        /* Cannot fail short of a full counter; a waiter in reopen/free sees the state anyway. */
        ssize_t n = write(a->efd, &one, sizeof one);
        (void)n;
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static void hand_over(struct audit *a)
{
    a->busy = true;
    pthread_mutex_lock(&a->mu);
    a->state = JOB_QUEUED;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Blocks until the job in flight is back: bounded by its write and fdatasync. */
static void wait_back(struct audit *a)
{
    pthread_mutex_lock(&a->mu);
    while (a->state != JOB_DONE)
        pthread_cond_wait(&a->cv, &a->mu);
    a->state = JOB_IDLE;
    pthread_mutex_unlock(&a->mu);
}

/*
 * Hands the whole queue (its lines and records) to the writer, with an fdatasync when the mode,
 * a failed sync or a due periodic sync asks for one, and starts an empty queue. Without records
 * only a due periodic sync goes. Returns false when there is nothing to do. Not while busy.
 */
static bool start_job(struct audit *a)
{
    struct audit_job *j = &a->job;
    bool sync_due = a->sync_wanted && a->unsynced;

    a->sync_wanted = false;
    memset(j, 0, sizeof *j);
    if (a->nrecs == 0) {
        a->batch.len = 0;
        if (!sync_due)
            return false;
        j->sync = true;
    } else {
        /* The spare buffer becomes the queue: no copy, no allocation per batch. */
        a->wbuf = a->batch;
        a->batch = a->spare;
        a->batch.len = 0;
        memset(&a->spare, 0, sizeof a->spare);
        a->wrecs.recs = a->recs;
        a->wrecs.n = a->nrecs;
        a->recs = NULL;
        a->nrecs = a->caprecs = 0;
        a->wseq = a->seq;
        memcpy(a->whash, a->hash, sizeof a->hash);
        j->buf = a->wbuf.p;
        j->len = a->wbuf.len;
        j->sync = a->sync == CONFIG_AUDIT_SYNC_ALWAYS || a->sync_failed || sync_due;
    }
    a->wunsynced = a->unsynced;
    hand_over(a);
    return true;
}

/* A failed batch: callers hear ok=false, records nobody waits for are kept for a retry. */
static void fail_records(struct audit *a, const struct audit_batch *b, const char *buf)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct audit_rec *r = &b->recs[i];

        if (r->cb != NULL)
            a->refused++;
        else
            retry_push(a, r->ts, buf + r->rest_off, r->off + r->len - 1 - r->rest_off);
    }
}

static void batch_finish(struct audit_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->recs[i].cb != NULL)
            b->recs[i].cb(b->recs[i].ctx, b->recs[i].token, b->ok);
    free(b->recs);
    b->recs = NULL;
    b->n = 0;
}

static void acks_add(struct audit_acks *k, struct audit_batch b)
{
    if (b.n == 0) {
        free(b.recs);
        return;
    }
    if (k->n == sizeof k->b / sizeof k->b[0]) {
        /* Cannot happen (two per job, two jobs per reopen or free); never lose a callback. */
        batch_finish(&b);
        return;
    }
    k->b[k->n++] = b;
}

static void acks_fire(struct audit_acks *k)
{
    for (size_t i = 0; i < k->n; i++)
        batch_finish(&k->b[i]);
    k->n = 0;
}

/*
 * Applies the outcome of the job that came back. Its records (and, when its lines were cut off,
 * the queue's, which were chained on them) go to acks, for their callbacks to run once the state
 * is settled. Returns whether the job succeeded.
 */
static bool job_done(struct audit *a, struct audit_acks *acks)
{
    const struct audit_job *j = &a->job;
    struct audit_batch b = a->wrecs, q = {NULL, 0, false};

    a->busy = false;
    memset(&a->wrecs, 0, sizeof a->wrecs);
    b.ok = j->ok;
    if (j->ok) {
        if (j->sync) {
            a->sync_failed = false;
            a->unsynced = false;
        }
    }
    if (j->ok && j->len > 0) {
        if (!j->sync && a->sync == CONFIG_AUDIT_SYNC_BATCH) {
            a->unsynced = true;
            if (!a->closing && !a->sync_wanted && !evtimer_pending(a->ev_sync, NULL)) {
                struct timeval tv = {.tv_sec = a->batch_ms / 1000,
                                     .tv_usec = (a->batch_ms % 1000) * 1000};

                evtimer_add(a->ev_sync, &tv);
            }
        }
        a->good_seq = a->wseq;
        memcpy(a->good_hash, a->whash, sizeof a->whash);
        if (!a->available) {
            a->available = true;
            log_info("audit_resumed refused_calls=%" PRIu64 " failures_not_logged=%" PRIu64,
                     a->refused, a->errors_not_logged);
            a->refused = 0;
            a->errors_not_logged = 0;
            if (a->retry_head == NULL && a->dropped == 0)
                evtimer_del(a->ev_retry);
        }
        if (a->retry_head != NULL || a->dropped > 0)
            arm_retry(a, 0);
    } else if (!j->ok && j->len == 0) {
        /* A periodic sync: acknowledged records may be lost; refuse until a write is synced. */
        a->sync_failed = true;
        mark_unavailable(a, j->op, j->err);
    } else if (!j->ok) {
        if (j->cut_err != 0)
            log_error("audit_cut_back_failed size=%jd error=\"%s\"", (intmax_t)a->good_size,
                      strerror(j->cut_err));
        if (j->sync && a->wunsynced)
            a->sync_failed = true; /* the periodic sync folded into this job did not happen */
        fail_records(a, &b, a->wbuf.p);
        /* What queued meanwhile was chained on the lines just cut off: it fails with them. */
        q.recs = a->recs;
        q.n = a->nrecs;
        fail_records(a, &q, a->batch.p);
        a->recs = NULL;
        a->nrecs = a->caprecs = 0;
        a->batch.len = 0;
        a->seq = a->good_seq;
        memcpy(a->hash, a->good_hash, sizeof a->hash);
        mark_unavailable(a, j->op, j->err);
    }
    acks_add(acks, b);
    acks_add(acks, q);
    /* The written buffer is the next spare, unless a burst made it large. */
    if (a->spare.p == NULL && a->wbuf.cap <= AUDIT_SPARE_KEEP) {
        a->spare = a->wbuf;
        a->spare.len = 0;
    } else {
        free(a->wbuf.p);
    }
    memset(&a->wbuf, 0, sizeof a->wbuf);
    return j->ok;
}

/* Waits for the job in flight, if any, and applies its outcome (reopen, free). */
static void finish_in_flight(struct audit *a, struct audit_acks *acks)
{
    if (!a->busy)
        return;
    wait_back(a);
    job_done(a, acks);
}

/* Writes the queue now and waits for it (start, reopen, free). False when that failed. */
static bool commit_now(struct audit *a, struct audit_acks *acks)
{
    finish_in_flight(a, acks);
    if (!start_job(a))
        return true;
    wait_back(a);
    return job_done(a, acks);
}

/* One fdatasync now, outside the chain's bookkeeping (the last one of a file). Not while busy. */
static int sync_now(struct audit *a)
{
    memset(&a->job, 0, sizeof a->job);
    a->job.sync = true;
    hand_over(a);
    wait_back(a);
    a->busy = false;
    if (!a->job.ok) {
        errno = a->job.err;
        return -1;
    }
    return 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct audit *a = arg;

    /* While a job is in flight the queue grows; its completion starts the next write. */
    if (!a->busy)
        start_job(a);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct audit *a = arg;
    struct audit_acks acks = {.n = 0};
    uint64_t count;
    bool back;

    if (read(a->efd, &count, sizeof count) == -1 && errno != EAGAIN)
        log_warn("audit_eventfd_read error=\"%s\"", strerror(errno));
    if (!a->busy)
        return; /* already collected by reopen or free */
    pthread_mutex_lock(&a->mu);
    back = a->state == JOB_DONE;
    if (back)
        a->state = JOB_IDLE;
    pthread_mutex_unlock(&a->mu);
    if (!back)
        return;
    job_done(a, &acks);
    /* Group commit: what queued during that job goes now, in one write (and one sync), while
     * the callbacks run. */
    start_job(a);
    acks_fire(&acks);
}

static void on_sync(evutil_socket_t fd, short what, void *arg)
{
    struct audit *a = arg;

    if (!a->unsynced)
        return;
    a->sync_wanted = true;
    if (!a->busy)
        start_job(a);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct audit *a = arg;

    requeue_retries(a);
    if (a->nrecs == 0 && !a->available && !a->busy) {
        /* Nothing waits, yet only a write can tell the disk is back. */
        cJSON *probe = cJSON_CreateObject();

        if (probe == NULL || cJSON_AddStringToObject(probe, "event", "audit_resumed") == NULL ||
            cJSON_AddNumberToObject(probe, "refused_calls", (double)a->refused) == NULL) {
            cJSON_Delete(probe);
            arm_retry(a, AUDIT_RETRY_MS);
            return;
        }
        if (enqueue_event(a, probe, NULL, NULL, 0) == 0)
            arm_retry(a, AUDIT_RETRY_MS);
    }
    if (!a->busy)
        start_job(a);
}

/* ---- the file's tail ---------------------------------------------------------------------- */

/* Reads the last min(end, AUDIT_MAX_LINE + 1) bytes before offset end. */
static int read_before(int fd, off_t end, char *buf, size_t *n, off_t *off)
{
    size_t want = end > (off_t)(AUDIT_MAX_LINE + 1) ? AUDIT_MAX_LINE + 1 : (size_t)end;
    size_t got = 0;

    *off = end - (off_t)want;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, *off + (off_t)got);

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            return -1;
        if (r == 0) {
            errno = EIO; /* the file shrank under us */
            return -1;
        }
        got += (size_t)r;
    }
    *n = got;
    return 0;
}

/* A crash mid-write leaves the start of a record, or NUL bytes where blocks were not written. */
static bool looks_like_fragment(const char *p, size_t len)
{
    static const char start[] = "{\"seq\":";
    size_t k = len < sizeof start - 1 ? len : sizeof start - 1;
    bool zeros = true;

    for (size_t i = 0; i < len && zeros; i++)
        zeros = p[i] == '\0';
    return zeros || memcmp(p, start, k) == 0;
}

static int tail_seq(const char *line, size_t len, uint64_t *seq)
{
    cJSON *v = cJSON_ParseWithLength(line, len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "seq");
    int rc = -1;

    if (cJSON_IsObject(v) && cJSON_IsNumber(s) && s->valuedouble >= 1 &&
        s->valuedouble < (double)AUDIT_SEQ_MAX &&
        (double)(uint64_t)s->valuedouble == s->valuedouble) {
        *seq = (uint64_t)s->valuedouble;
        rc = 0;
    }
    cJSON_Delete(v);
    return rc;
}

/* Reads the tail; changes nothing (the caller cuts a torn line off once it accepts the tail). */
static int read_tail(int fd, struct audit_tail *t, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL, *nl;
    size_t n = 0, start;
    off_t off = 0, end;
    int rc = -1;

    memset(t, 0, sizeof *t);
    memcpy(t->hash, AUDIT_ZERO_HASH, sizeof t->hash);
    if (fstat(fd, &st) == -1) {
        snprintf(err, errlen, "audit log: fstat: %s", strerror(errno));
        return -1;
    }
    t->regular = S_ISREG(st.st_mode);
    t->empty = true;
    if (!t->regular || st.st_size == 0)
        return 0;
    if ((buf = malloc(AUDIT_MAX_LINE + 1)) == NULL) {
        snprintf(err, errlen, "audit log: out of memory");
        return -1;
    }
    end = st.st_size;
    if (read_before(fd, end, buf, &n, &off) == -1)
        goto read_failed;
    if (buf[n - 1] != '\n') {
        nl = memrchr(buf, '\n', n);
        start = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
        if (nl == NULL && off > 0) {
            snprintf(err, errlen,
                     "audit log: the last %u bytes hold no line end: not an audit log, or damaged "
                     "beyond a torn record",
                     AUDIT_MAX_LINE + 1);
            goto out;
        }
        if (!looks_like_fragment(buf + start, n - start)) {
            snprintf(err, errlen,
                     "audit log: the last line has no line end and is not the start of a record");
            goto out;
        }
        end = off + (off_t)start;
        t->truncated = st.st_size - end;
        if (end == 0) {
            rc = 0;
            goto out;
        }
        if (read_before(fd, end, buf, &n, &off) == -1)
            goto read_failed;
    }
    nl = n > 1 ? memrchr(buf, '\n', n - 1) : NULL;
    start = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
    if (nl == NULL && off > 0) {
        snprintf(err, errlen, "audit log: the last line is longer than %u bytes", AUDIT_MAX_LINE);
        goto out;
    }
    if (tail_seq(buf + start, n - 1 - start, &t->seq) == -1) {
        snprintf(err, errlen,
                 "audit log: the last line is not an audit record (a JSON object with a positive "
                 "integer \"seq\")");
        goto out;
    }
    util_sha256_hex(buf + start, n - 1 - start, t->hash);
    t->empty = false;
    t->size = end;
    rc = 0;
    goto out;

read_failed:
    snprintf(err, errlen, "audit log: read: %s", strerror(errno));
out:
    free(buf);
    return rc;
}

/* Cuts a torn line off a tail read_tail accepted. */
static int cut_torn(int fd, const struct audit_tail *t, char *err, size_t errlen)
{
    if (t->truncated == 0)
        return 0;
    if (ftruncate(fd, t->size) == -1) {
        snprintf(err, errlen, "audit log: cannot cut off the torn last line: %s", strerror(errno));
        return -1;
    }
    log_warn("audit_torn_tail truncated_bytes=%jd", (intmax_t)t->truncated);
    return 0;
}

static void adopt_tail(struct audit *a, const struct audit_tail *t)
{
    a->regular = t->regular;
    a->good_seq = a->seq = t->seq;
    memcpy(a->good_hash, t->hash, sizeof t->hash);
    memcpy(a->hash, t->hash, sizeof t->hash);
    a->good_size = t->size;
    a->cut_pending = false;
}

/* {"event":"audit_open","reason":reason,...} queued without a callback. */
static uint64_t enqueue_open(struct audit *a, const char *reason, const char *previous_hash,
                             off_t truncated)
{
    cJSON *ev = cJSON_CreateObject();

    if (ev == NULL || cJSON_AddStringToObject(ev, "event", "audit_open") == NULL ||
        cJSON_AddStringToObject(ev, "reason", reason) == NULL ||
        (previous_hash != NULL &&
         cJSON_AddStringToObject(ev, "previous_hash", previous_hash) == NULL) ||
        (truncated > 0 &&
         cJSON_AddNumberToObject(ev, "truncated_bytes", (double)truncated) == NULL)) {
        cJSON_Delete(ev);
        return 0;
    }
    return enqueue_event(a, ev, NULL, NULL, 0);
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* Not while busy. */
static void destroy(struct audit *a)
{
    if (a->thread_started) {
        pthread_mutex_lock(&a->mu);
        a->stop = true;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->thread, NULL);
    }
    if (a->sync_init) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
    }
    if (a->ev_flush != NULL)
        event_free(a->ev_flush);
    if (a->ev_sync != NULL)
        event_free(a->ev_sync);
    if (a->ev_retry != NULL)
        event_free(a->ev_retry);
    if (a->ev_done != NULL)
        event_free(a->ev_done);
    if (a->efd != -1)
        close(a->efd);
    while (a->retry_head != NULL)
        retry_drop_head(a);
    free(a->batch.p);
    free(a->spare.p);
    free(a->wbuf.p);
    free(a->recs);
    free(a->wrecs.recs);
    if (a->fd != -1)
        close(a->fd);
    free(a);
}

/* The writer thread, with every signal blocked: they belong to the loop. */
static int start_writer(struct audit *a, char *err, size_t errlen)
{
    sigset_t all, old;
    int rc;

    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        snprintf(err, errlen, "audit log: cannot create a mutex");
        return -1;
    }
    if (pthread_cond_init(&a->cv, NULL) != 0) {
        pthread_mutex_destroy(&a->mu);
        snprintf(err, errlen, "audit log: cannot create a condition variable");
        return -1;
    }
    a->sync_init = true;
    if ((a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
        snprintf(err, errlen, "audit log: eventfd: %s", strerror(errno));
        return -1;
    }
    a->ev_done = event_new(a->base, a->efd, EV_READ | EV_PERSIST, on_done, a);
    if (a->ev_done == NULL || event_add(a->ev_done, NULL) == -1) {
        snprintf(err, errlen, "audit log: cannot watch the writer thread");
        return -1;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&a->thread, NULL, writer_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "audit log: cannot start the writer thread: %s", strerror(rc));
        return -1;
    }
    a->thread_started = true;
    return 0;
}

struct audit *audit_new(struct event_base *base, int fd, enum config_audit_sync sync,
                        uint32_t batch_ms, char *err, size_t errlen)
{
    struct audit *a = NULL;
    struct audit_tail t;
    struct audit_acks acks = {.n = 0};
    bool ok;

    if (read_tail(fd, &t, err, errlen) == -1 || cut_torn(fd, &t, err, errlen) == -1)
        goto fail;
    if ((a = calloc(1, sizeof *a)) == NULL) {
        snprintf(err, errlen, "audit log: out of memory");
        goto fail;
    }
    a->base = base;
    a->fd = fd;
    fd = -1;
    a->efd = -1;
    a->sync = sync;
    a->batch_ms = batch_ms > 0 ? batch_ms : 1;
    a->available = true;
    a->write_fn = write;
    a->sync_fn = fdatasync;
    adopt_tail(a, &t);
    if (start_writer(a, err, errlen) == -1)
        goto fail;
    a->ev_flush = event_new(base, -1, 0, on_flush, a);
    a->ev_sync = evtimer_new(base, on_sync, a);
    a->ev_retry = evtimer_new(base, on_retry, a);
    if (a->ev_flush == NULL || a->ev_sync == NULL || a->ev_retry == NULL ||
        enqueue_open(a, "start", NULL, t.truncated) == 0) {
        snprintf(err, errlen, "audit log: out of memory");
        goto fail;
    }
    ok = commit_now(a, &acks);
    acks_fire(&acks);
    if (!ok) {
        snprintf(err, errlen, "audit log: cannot write: %s", strerror(a->last_errno));
        goto fail;
    }
    return a;

fail:
    if (fd != -1)
        close(fd);
    if (a != NULL) {
        a->closing = true;
        destroy(a);
    }
    return NULL;
}

int audit_reopen(struct audit *a, int fd, char *err, size_t errlen)
{
    struct audit_tail t;
    struct audit_acks acks = {.n = 0};
    const char *reason;
    char previous[AUDIT_HASH_HEX + 1];

    /* What was queued belongs to the old file; its callbacks wait until the switch is done. */
    commit_now(a, &acks);
    if (read_tail(fd, &t, err, errlen) == -1 || cut_torn(fd, &t, err, errlen) == -1) {
        close(fd);
        acks_fire(&acks);
        return -1;
    }
    if (a->unsynced && sync_now(a) == -1)
        log_error("audit_sync_failed file=old error=\"%s\"", strerror(errno));
    if (a->cut_pending)
        log_error("audit_old_file_torn size=%jd", (intmax_t)a->good_size);
    close(a->fd);
    a->fd = fd;
    a->unsynced = false;
    a->sync_failed = false;
    a->sync_wanted = false;
    evtimer_del(a->ev_sync);
    memcpy(previous, a->good_hash, sizeof previous);
    if (t.empty) {
        /* Rotated: the chain goes on from the old file's last line. */
        reason = "rotate";
        a->regular = t.regular;
        a->good_size = 0;
        a->cut_pending = false;
    } else {
        reason = "reopen";
        if (t.seq != a->good_seq || strcmp(t.hash, a->good_hash) != 0)
            log_warn("audit_reopen_tail_differs seq=%" PRIu64 " expected_seq=%" PRIu64, t.seq,
                     a->good_seq);
        adopt_tail(a, &t);
    }
    if (enqueue_open(a, reason, t.empty ? previous : NULL, t.truncated) == 0)
        log_error("audit_open_record_failed reason=%s", reason);
    acks_fire(&acks);
    return 0;
}

uint64_t audit_record(struct audit *a, cJSON *event, audit_cb cb, void *ctx, uint64_t token)
{
    if (a == NULL || a->closing) {
        cJSON_Delete(event);
        return 0;
    }
    requeue_retries(a);
    uint64_t seq = enqueue_event(a, event, cb, ctx, token);
    /* A caller's record nobody waits for that cannot be queued (queue full, no memory) is
     * counted, so the next audit_gap record says how many are missing. */
    if (seq == 0 && cb == NULL)
        a->dropped++;
    return seq;
}

bool audit_available(const struct audit *a)
{
    return a != NULL && a->available;
}

bool audit_idle(const struct audit *a)
{
    return a == NULL || (!a->busy && a->nrecs == 0);
}

void audit_free(struct audit *a)
{
    struct audit_acks acks = {.n = 0};

    if (a == NULL)
        return;
    a->closing = true;
    finish_in_flight(a, &acks);
    requeue_retries(a);
    commit_now(a, &acks);
    acks_fire(&acks);
    if (a->unsynced && sync_now(a) == -1)
        log_error("audit_sync_failed error=\"%s\"", strerror(errno));
    if (a->retry_head != NULL || a->dropped > 0)
        log_error("audit_records_lost count=%" PRIu64, (uint64_t)a->nretry + a->dropped);
    destroy(a);
}

void audit_set_io(struct audit *a, ssize_t (*write_fn)(int fd, const void *buf, size_t len),
                  int (*sync_fn)(int fd))
{
    /* The writer reads them during a job: change them between jobs. */
    pthread_mutex_lock(&a->mu);
    while (a->state == JOB_QUEUED || a->state == JOB_RUNNING)
        pthread_cond_wait(&a->cv, &a->mu);
    a->write_fn = write_fn != NULL ? write_fn : write;
    a->sync_fn = sync_fn != NULL ? sync_fn : fdatasync;
    pthread_mutex_unlock(&a->mu);
}
