/*
 * log.h — structured key=value log lines on stderr (journald takes them under systemd).
 *
 * Every line is "level=<lvl> proc=<process> msg=<word> key=value ...". Callers pass the key=value
 * tail already formatted; every value that comes from outside — a JWT's user, agent or tenant,
 * a tool, prompt or method name, a URI, a header, anything a child sent — goes through
 * log_quote() or log_quote_str(), so a hostile string cannot forge extra fields or lines. Only
 * our own words, numbers and names the configuration validated are printed bare.
 */
#ifndef MCPVISOR_LOG_H
#define MCPVISOR_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_init(const char *proc, enum log_level min);
void log_set_proc(const char *proc);
/* From now on a line the log's reader cannot take at once is dropped and counted (a later line
 * says how many) instead of blocking: for the front's event loop. */
void log_nonblocking(void);
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log and exit(1); fatal() appends errno's text. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Writes `s` (len bytes) as a double-quoted value into out (outlen bytes, always terminated),
 * escaping quotes, backslashes and control bytes; truncates with "..." when it does not fit.
 * Returns out.
 */
char *log_quote(char *out, size_t outlen, const char *s, size_t len);

/* log_quote of a NUL-terminated string; NULL is written as "" (no value). */
#define LOG_QUOTED_MAX 320 /* a buffer that holds a 255-byte name whole, when it is plain text */
const char *log_quote_str(char *out, size_t outlen, const char *s);

#endif
