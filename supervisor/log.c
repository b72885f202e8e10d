/*
 * log.c — the one logging module. Writes whole lines with a single write(2) so lines from the
 * parent, the front and children's relayed stderr never interleave mid-line. Never allocates;
 * in the front never waits (log_nonblocking): lines a stalled reader cannot take are counted.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const char *log_proc = "mcpvisor";
static enum log_level log_min = LOG_LEVEL_INFO;
static int log_fd = STDERR_FILENO;
static bool log_sock;        /* log_fd is a socket: sent with MSG_DONTWAIT */
static uint64_t log_dropped; /* lines the non-blocking log could not take */

void log_init(const char *proc, enum log_level min)
{
    log_proc = proc;
    log_min = min;
    const char *env = getenv("MCPVISOR_LOG_LEVEL");
    if (env != NULL && strcmp(env, "debug") == 0)
        log_min = LOG_LEVEL_DEBUG;
}

void log_set_proc(const char *proc)
{
    log_proc = proc;
}

void log_nonblocking(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) == -1)
        return;
    if (S_ISSOCK(st.st_mode)) { /* journald's stream: per-call flags, the socket unchanged */
        log_sock = true;
        return;
    }
    if (!S_ISFIFO(st.st_mode))
        return; /* a file or a terminal: writes do not wait on a reader */
    /* The parent gave a pipe a description of our own (O_NONBLOCK on the shared one would
     * change the other writers); without one, stay blocking rather than change theirs. */
    int fl = fcntl(STDERR_FILENO, F_GETFL);
    if (fl == -1 || (fl & O_NONBLOCK) == 0)
        return;
    (void)fcntl(STDERR_FILENO, F_SETPIPE_SZ, 1 << 20); /* more room before lines are dropped */
}

/* One whole line, never waiting: a reader that stopped reading costs lines, not the loop. */
static void log_write(const char *line, size_t len)
{
    ssize_t w =
        log_sock ? send(log_fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL) : write(log_fd, line, len);
    if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        log_dropped++;
}

static void log_emit(enum log_level lvl, const char *fmt, va_list ap, const char *suffix)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[4096];
    if (lvl < log_min)
        return;
    int n = snprintf(line, sizeof(line), "level=%s proc=%s msg=", names[lvl], log_proc);
    if (n < 0)
        return;
    size_t off = (size_t)n;
    int m = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
    if (m < 0)
        return;
    off = (size_t)m >= sizeof(line) - off ? sizeof(line) - 1 : off + (size_t)m;
    if (suffix != NULL && off < sizeof(line) - 1) {
        m = snprintf(line + off, sizeof(line) - off, " error=\"%s\"", suffix);
        if (m > 0)
            off = (size_t)m >= sizeof(line) - off ? sizeof(line) - 1 : off + (size_t)m;
    }
    if (off >= sizeof(line) - 1)
        off = sizeof(line) - 2;
    line[off++] = '\n';
    if (log_dropped > 0) {
        char note[128];
        int k = snprintf(note, sizeof(note),
                         "level=warn proc=%s msg=log_lines_dropped count=%llu note=\"the log's "
                         "reader was not reading\"\n",
                         log_proc, (unsigned long long)log_dropped);
        uint64_t before = log_dropped;
        log_write(note, (size_t)k);
        if (log_dropped == before)
            log_dropped = 0; /* told */
    }
    log_write(line, off);
}

#define LOG_FN(name, lvl)                                                                          \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_emit(lvl, fmt, ap, NULL);                                                              \
        va_end(ap);                                                                                \
    }
LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_error, LOG_LEVEL_ERROR)

void fatal(const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    log_emit(LOG_LEVEL_ERROR, fmt, ap, strerror(saved));
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(LOG_LEVEL_ERROR, fmt, ap, NULL);
    va_end(ap);
    exit(1);
}

char *log_quote(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;
    if (outlen < 6) {
        if (outlen > 0)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5]; /* \xNN and the NUL util_hex writes */
        size_t elen = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20 || c >= 0x7f) { /* log lines stay ASCII: no C1 controls */
            esc[0] = '\\';
            esc[1] = 'x';
            util_hex(&c, 1, esc + 2);
            elen = 4;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (o + elen + 5 > outlen) { /* room for ..." and NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(out + o, esc, elen);
        o += elen;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

const char *log_quote_str(char *out, size_t outlen, const char *s)
{
    return log_quote(out, outlen, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}
