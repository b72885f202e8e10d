/*
 * audit.h — the append-only, hash-chained audit log, written by the front on an fd the privileged
 * parent opened (O_RDWR|O_APPEND|O_CREAT|O_CLOEXEC, mode 0600). Each log has a writer thread that
 * does the write(2) and fdatasync(2), so the event loop never waits for the disk. See audit.c for
 * the format, the writer and the group commit; `mcpvisor audit verify|query` (auditcli.h) reads
 * what it writes.
 *
 * A line is {"seq":N,"ts":"2026-11-28T19:30:00.123456Z","prev":"<64 hex>","event":"<name>",...}:
 * seq grows by one across the whole chain (restarts and rotations included), ts is RFC 3339 UTC
 * with microseconds from CLOCK_REALTIME, prev is the lower-case hex SHA-256 of the previous
 * line's bytes without its "\n" (64 '0's for the first record of a new chain).
 */
#ifndef MCPVISOR_AUDIT_H
#define MCPVISOR_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "util.h"

#define AUDIT_MAX_LINE        (64u * 1024u)         /* one line, its "\n" included */
#define AUDIT_MAX_PENDING     (16u * 1024u * 1024u) /* bytes queued for the next group commit */
#define AUDIT_RETRY_MAX       4096u                 /* failed records kept for a retry */
#define AUDIT_RETRY_MAX_BYTES (1024u * 1024u)
#define AUDIT_RETRY_MS        1000u           /* retry interval while the log is unavailable */
#define AUDIT_HASH_HEX        UTIL_SHA256_HEX /* a line's hash, util_sha256_hex */
#define AUDIT_TS_LEN          27              /* "2026-11-28T19:30:00.123456Z" */
/* In a line over AUDIT_MAX_LINE, a string longer than this (and the cut mark) keeps this many
 * bytes. Shorter strings are never cut: a value that may be longer and must stay identifiable
 * (a call's target, a string request id) has its SHA-256 recorded beside it, which survives. */
#define AUDIT_CUT_STRING 256

struct event_base;
struct audit;

typedef void (*audit_cb)(void *ctx, uint64_t token, bool ok);

/*
 * Takes ownership of fd (always: it is closed on failure too). Reads at most the file's last
 * AUDIT_MAX_LINE+1 bytes (twice when the tail is torn) to continue the chain from the last
 * complete line's seq and SHA-256. A torn last line (no trailing "\n", as a crash mid-write
 * leaves) is truncated away, but only once the line before it has been checked and only when the
 * fragment looks like the start of a record (or is all NUL bytes). Then starts the writer thread
 * and writes at once, waiting for it (synced as `sync` says), {"event":"audit_open","reason":
 * "start"}, with "truncated_bytes":N when a fragment was cut off. Returns NULL with one line in
 * err when the tail is not a valid chain tail (last line not a JSON object with a positive
 * integer "seq") or the first record cannot be written: the daemon must then refuse to start.
 * batch_ms: the fdatasync interval with sync "batch" (0 is taken as 1).
 */
struct audit *audit_new(struct event_base *base, int fd, enum config_audit_sync sync,
                        uint32_t batch_ms, char *err, size_t errlen);

/*
 * SIGHUP: continue on a new fd (takes ownership, always). Waits for the write in flight, then what
 * is queued is written to the old fd (waiting for that too), then the old fd is closed; the
 * callbacks of those records fire before audit_reopen returns, once the new file's audit_open
 * record is queued. An empty new file (rotated) starts with
 * {"event":"audit_open","reason":"rotate","previous_hash":H} whose prev is H, the hash of the last
 * line written to the old file, and seq continues. A non-empty one (the same file, reopened) is
 * continued from its tail as audit_new does (reason "reopen"). Returns -1 with err filled when the
 * new file's tail is not a valid chain tail: the new fd is closed and the old one stays in use.
 */
int audit_reopen(struct audit *a, int fd, char *err, size_t errlen);

/*
 * Appends a record. `event` (ownership taken, freed on every path) is a cJSON object holding
 * "event":"<name>" and its fields; keys "seq", "ts" and "prev" in it are dropped. A line longer
 * than AUDIT_MAX_LINE has its strings over AUDIT_CUT_STRING bytes cut (marked "...[truncated]";
 * hashes and names are shorter, so they stay whole), and when that is not
 * enough is replaced by {"event":"audit_oversize","orig_event":...,"orig_bytes":N}.
 * The record goes out with this loop turn's group commit, or, when a write is in flight, with the
 * next one, started as soon as that write is done. When cb is not NULL it is called
 * exactly once, from the loop (never from inside audit_record; from inside audit_reopen or
 * audit_free for what those flush), with ok=true once the record is written (and, with sync
 * "always", fdatasync'ed), or ok=false when it could not be: token comes back unchanged. Records
 * without a callback that fail are kept (bounded) and retried. Returns the record's seq (> 0), or 0
 * when it cannot even be queued (pending queue full, no memory, not an object with a string
 * "event"): then cb is never called.
 */
uint64_t audit_record(struct audit *a, cJSON *event, audit_cb cb, void *ctx, uint64_t token);

/* False from a failed write or fdatasync until the next one succeeds. */
bool audit_available(const struct audit *a);

/* Nothing queued and no write or fdatasync in flight (tests wait for it). */
bool audit_idle(const struct audit *a);

/*
 * Waits for the write in flight, writes what is queued (callbacks get their answer from inside
 * this call), stops the writer thread, closes the fd.
 */
void audit_free(struct audit *a);

/*
 * Tests only: replaces write(2) and fdatasync(2) for this log (called on the writer thread), to
 * model a disk that fails, stalls and recovers; NULL restores the system call. Waits until no
 * job is in flight.
 */
void audit_set_io(struct audit *a, ssize_t (*write_fn)(int fd, const void *buf, size_t len),
                  int (*sync_fn)(int fd));

/* A pure helper, shared with the CLI and the tests: "2026-11-28T19:30:00.123456Z" (UTC,
 * microseconds); -1 when the year is not 0000..9999. */
int audit_format_ts(const struct timespec *ts, char out[AUDIT_TS_LEN + 1]);

#endif
