/*
 * config.c — loads mcpvisor.json, every manifest in its manifests_dir and its API-key file into a
 * struct config, validating every key on the way.
 *
 * Invariants: every byte is read through a struct config_source, so the front can re-run exactly
 * this validation over a bundle of the files the parent read; a config that is returned is
 * complete and checked; on failure nothing leaks and err holds exactly one line,
 * "<file>: <json pointer>: <rule>" (or "<file>:<line>:<col>: <rule>" for syntax). Unknown and
 * duplicate keys are errors. Paths are resolved lexically, never through the filesystem, so the
 * same bytes give the same config in any process.
 *
 * Never logs, never exits: the caller decides what an invalid configuration means.
 */
#include "config.h"
#include "jose.h"
#include "util.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * MIB)

#define CONFIG_MAX_MANIFESTS  1024   /* *.json files in manifests_dir */
#define CONFIG_MAX_TENANTS    4096   /* uid uniqueness is checked pairwise */
#define CONFIG_MAX_API_KEYS   100000 /* records in the API-key file */
#define CONFIG_MAX_LIST       4096   /* entries in any other array or map */
#define CONFIG_MAX_ARGS       1024   /* a manifest's command */
#define CONFIG_TEXT_MAX       255    /* principals, scopes, versions, claim names */
#define CONFIG_URL_MAX        2048
#define CONFIG_PATH_MAX       (PATH_MAX - 1)
#define CONFIG_TOOL_NAME_MAX  128
#define CONFIG_RATE_MAX_PER_S 1000000 /* a rate above this is a typo, not a limit */

#define NAME_RULE "expected a name of 1 to 63 characters from A-Z a-z 0-9 _ . - (not . or ..)"
#define RATE_RULE "expected \"N/s\" or \"N/min\""

#define BUNDLE_FORMAT "mcpvisor-config-bundle/1"

/* ---- error messages ---------------------------------------------------------------------- */

/* One step of a JSON pointer, chained towards the root (up == NULL is a top-level member). */
struct loc {
    const struct loc *up;
    const char *key; /* NULL: the idx'th element of an array */
    size_t idx;
};

#define KEY(up_, key_) (&(struct loc){(up_), (key_), 0})
#define IDX(up_, idx_) (&(struct loc){(up_), NULL, (idx_)})

struct ctx {
    const struct config_source *src;
    struct config *cfg;
    const char *main_file; /* mcpvisor.json as the caller named it */
    const char *file;      /* the file being read, as the user would recognise it */
    char *err;
    size_t errlen;
};

static void put(char *buf, size_t size, size_t *pos, const char *s, size_t n)
{
    while (n-- > 0 && *pos + 1 < size)
        buf[(*pos)++] = *s++;
    buf[*pos] = '\0';
}

/* RFC 6901: "~" is written "~0" and "/" is written "~1". */
static void ptr_format(const struct loc *at, char *buf, size_t size, size_t *pos)
{
    char num[24];
    int n;

    if (at == NULL)
        return;
    ptr_format(at->up, buf, size, pos);
    put(buf, size, pos, "/", 1);
    if (at->key == NULL) {
        n = snprintf(num, sizeof num, "%zu", at->idx);
        put(buf, size, pos, num, (size_t)n);
        return;
    }
    for (const char *k = at->key; *k != '\0'; k++) {
        if (*k == '~')
            put(buf, size, pos, "~0", 2);
        else if (*k == '/')
            put(buf, size, pos, "~1", 2);
        else
            put(buf, size, pos, k, 1);
    }
}

/* Keys and values quoted into a message come from the file: keep the message on one line. */
static void one_line(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

__attribute__((format(printf, 3, 4))) static void fail_msg(struct ctx *c, const struct loc *at,
                                                           const char *fmt, ...)
{
    char ptr[CONFIG_ERR_MAX], msg[CONFIG_ERR_MAX];
    size_t pos = 0;
    va_list ap;

    if (c->err == NULL || c->errlen == 0)
        return;
    ptr[0] = '\0';
    ptr_format(at, ptr, sizeof ptr, &pos);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at != NULL)
        snprintf(c->err, c->errlen, "%s: %s: %s", c->file, ptr, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
    one_line(c->err);
}

/* Writes the message and evaluates to -1; the constant lets the compiler follow error paths. */
#define fail(...) (fail_msg(__VA_ARGS__), -1)

/* Syntax errors name a line and a column (in characters, 1-based) instead of a pointer. */
static int fail_at_offset(struct ctx *c, const char *buf, size_t off, const char *rule)
{
    size_t line = 1, col = 1;

    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
            col++;
        }
    }
    if (c->err != NULL && c->errlen > 0) {
        snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->file, line, col, rule);
        one_line(c->err);
    }
    return -1;
}

static int oom(struct ctx *c)
{
    fail_msg(c, NULL, "out of memory");
    return -1;
}

/* ---- character classes (ASCII only: the locale must not change what a name is) ------------ */

static bool is_alpha(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_name(const char *s)
{
    size_t n;

    for (n = 0; s[n] != '\0'; n++)
        if (!is_alpha(s[n]) && !is_digit(s[n]) && s[n] != '_' && s[n] != '.' && s[n] != '-')
            return false;
    /* "." and ".." would become path components wherever names name directories. */
    return n >= 1 && n < CONFIG_NAME_MAX && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool is_tool_name(const char *s)
{
    size_t n;

    for (n = 0; s[n] != '\0'; n++)
        if (!is_alpha(s[n]) && !is_digit(s[n]) && strchr("_.-/", s[n]) == NULL)
            return false;
    return n >= 1 && n <= CONFIG_TOOL_NAME_MAX;
}

static bool is_env_name(const char *s)
{
    size_t n;

    if (!is_alpha(s[0]) && s[0] != '_')
        return false;
    for (n = 1; s[n] != '\0'; n++)
        if (!is_alpha(s[n]) && !is_digit(s[n]) && s[n] != '_')
            return false;
    return n <= CONFIG_TEXT_MAX;
}

static bool is_user_name(const char *s)
{
    size_t n;

    if (!is_alpha(s[0]) && s[0] != '_')
        return false;
    for (n = 1; s[n] != '\0'; n++)
        if (!is_alpha(s[n]) && !is_digit(s[n]) && strchr("_.-", s[n]) == NULL)
            return false;
    return n <= 32;
}

static bool is_file_name(const char *s)
{
    return strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E. */
static bool is_scope(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

static bool is_syscall_name(const char *s)
{
    size_t n;

    for (n = 0; s[n] != '\0'; n++)
        if (!(s[n] >= 'a' && s[n] <= 'z') && !is_digit(s[n]) && s[n] != '_')
            return false;
    return n >= 1 && n < 64;
}

/* The first n bytes of s are uri-host [":" port], as a Host header names a server: a reg-name
 * of letters, digits and "-._~", an IPv4 address or a bracketed IPv6 address; a port of 1 to
 * 65535. Nothing that could end a quoted string, start a path or carry userinfo. */
static bool is_host_port(const char *s, size_t n)
{
    size_t h;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);

        if (close == NULL || close == s + 1)
            return false;
        h = (size_t)(close - s) + 1;
        for (size_t i = 1; i + 1 < h; i++)
            if (!is_digit(s[i]) && strchr("abcdefABCDEF:.", s[i]) == NULL)
                return false;
    } else {
        for (h = 0; h < n && s[h] != ':'; h++)
            if (!is_alpha(s[h]) && !is_digit(s[h]) && strchr("-._~", s[h]) == NULL)
                return false;
        if (h == 0)
            return false;
    }
    if (h == n)
        return true;
    if (s[h] != ':' || n - h < 2 || n - h > 6)
        return false;
    unsigned long port = 0;
    for (size_t i = h + 1; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

static bool is_host_name(const char *s)
{
    return is_host_port(s, strlen(s));
}

/* public_url: http(s)://host[:port][/path]. Answers carry URLs built on it (a challenge's quoted
 * resource_metadata among them), so its host is of Host's syntax and its path of RFC 3986 path
 * characters only: no userinfo, query, fragment, quote, backslash or space. */
static bool is_public_url(const char *s)
{
    size_t scheme = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;

    if (scheme == 0)
        return false;
    s += scheme;
    size_t alen = strcspn(s, "/");
    if (!is_host_port(s, alen))
        return false;
    for (s += alen; *s != '\0'; s++)
        if (!is_alpha(*s) && !is_digit(*s) && strchr("-._~%!$&'()*+,;=:@/", *s) == NULL)
            return false;
    return true;
}

/* An absolute path with no "." or ".." component: sandbox paths name host and child paths
 * that the kernel resolves itself, so a lexical ".." would mean something else there. */
static bool is_sandbox_path(const char *s)
{
    const char *seg = s;

    if (s[0] != '/')
        return false;
    while (*seg != '\0') {
        size_t n;

        while (*seg == '/')
            seg++;
        n = strcspn(seg, "/");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg += n;
    }
    return true;
}

static int hex_value(int ch, bool lower_only)
{
    return lower_only && ch >= 'A' && ch <= 'F' ? -1 : util_hex_digit(ch);
}

/* 64 hex digits into 32 bytes (out may be NULL to only check). */
static bool hex32(const char *s, bool lower_only, uint8_t out[32])
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_value(s[2 * i], lower_only), lo = hex_value(s[2 * i + 1], lower_only);

        if (hi < 0 || lo < 0)
            return false;
        if (out != NULL)
            out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

enum url_kind {
    URL_ANY,    /* http:// or https:// with a host */
    URL_ORIGIN, /* scheme://host[:port], nothing after: what browsers send in Origin */
    URL_FETCH,  /* something we fetch: https://, or http:// to a loopback host only */
};

static bool is_url(const char *s, enum url_kind kind)
{
    size_t scheme, alen, hlen;
    const char *auth;

    if (strncmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (strncmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return false;
    if (strchr(s, ' ') != NULL)
        return false;
    auth = s + scheme;
    alen = strcspn(auth, "/?#");
    /* userinfo in a URL we act on is a classic way to disguise the real host. */
    if (alen == 0 || memchr(auth, '@', alen) != NULL)
        return false;
    if (kind == URL_ORIGIN && auth[alen] != '\0')
        return false;
    if (kind == URL_FETCH && scheme == 7) {
        if (auth[0] == '[') {
            const char *close = memchr(auth, ']', alen);

            hlen = close != NULL ? (size_t)(close - auth) + 1 : alen;
        } else {
            hlen = strcspn(auth, ":/?#");
        }
        if (!((hlen == 9 && strncmp(auth, "127.0.0.1", 9) == 0) ||
              (hlen == 9 && strncmp(auth, "localhost", 9) == 0) ||
              (hlen == 5 && strncmp(auth, "[::1]", 5) == 0)))
            return false;
    }
    return true;
}

/* ---- paths -------------------------------------------------------------------------------- */

/*
 * base + "/" + path (or path alone when it is absolute), with ".", ".." and repeated slashes
 * resolved lexically; ".." never climbs above "/". base must be absolute. Returns malloc'ed.
 */
static char *path_absolute(const char *base, const char *path)
{
    size_t blen = path[0] == '/' || base == NULL ? 0 : strlen(base), plen = strlen(path), o = 0;
    char *in, *out;
    const char *seg;

    in = malloc(blen + 1 + plen + 1);
    if (in == NULL)
        return NULL;
    memcpy(in, base != NULL ? base : "", blen);
    in[blen] = '/';
    memcpy(in + blen + 1, path, plen + 1);
    out = malloc(blen + 1 + plen + 2);
    if (out == NULL) {
        free(in);
        return NULL;
    }
    seg = in;
    while (*seg != '\0') {
        size_t n;

        while (*seg == '/')
            seg++;
        n = strcspn(seg, "/");
        if (n == 0 || (n == 1 && seg[0] == '.')) {
            /* nothing */
        } else if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
        } else {
            out[o++] = '/';
            memcpy(out + o, seg, n);
            o += n;
        }
        seg += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    free(in);
    return out;
}

/* The name to print for a file: relative to the configuration's folder when it is inside. */
static const char *display_name(const struct config *cfg, const char *abs)
{
    size_t n = strlen(cfg->dir);

    if (strcmp(cfg->dir, "/") == 0)
        return abs[0] == '/' && abs[1] != '\0' ? abs + 1 : abs;
    if (strncmp(abs, cfg->dir, n) == 0 && abs[n] == '/' && abs[n + 1] != '\0')
        return abs + n + 1;
    return abs;
}

/* ---- reading and parsing one file --------------------------------------------------------- */

/* Rejects NUL bytes (cJSON would take them for whitespace) and malformed UTF-8. */
static int check_encoding(struct ctx *c, const char *buf, size_t len)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;

    while (i < len) {
        unsigned char b = s[i];
        uint32_t cp, min;
        size_t n;

        if (b == 0)
            return fail_at_offset(c, buf, i, "invalid JSON");
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xe0) == 0xc0) {
            n = 1, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            n = 2, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            n = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return fail_at_offset(c, buf, i, "invalid UTF-8");
        }
        if (len - i <= n)
            return fail_at_offset(c, buf, i, "invalid UTF-8");
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return fail_at_offset(c, buf, i, "invalid UTF-8");
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return fail_at_offset(c, buf, i, "invalid UTF-8");
        i += n + 1;
    }
    return 0;
}

/*
 * What cJSON lets through but JSON does not: control bytes between tokens or raw inside strings.
 * Also "\u0000", which cJSON decodes into a NUL that silently truncates the string.
 * Runs on text cJSON accepted, so tracking strings by their quotes is exact.
 */
static int check_lexical(struct ctx *c, const char *buf, size_t len)
{
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)buf[i];

        if (!in_string) {
            if (b == '"')
                in_string = true;
            else if (b < 0x20 && b != '\t' && b != '\n' && b != '\r')
                return fail_at_offset(c, buf, i, "invalid JSON");
        } else if (b < 0x20) {
            return fail_at_offset(c, buf, i, "invalid JSON");
        } else if (b == '"') {
            in_string = false;
        } else if (b == '\\' && i + 1 < len) {
            if (buf[i + 1] == 'u' && len - i >= 6 && memcmp(buf + i + 2, "0000", 4) == 0)
                return fail_at_offset(c, buf, i, "\\u0000 is not allowed in strings");
            i++;
        }
    }
    return 0;
}

/* Fails at dup, a member somewhere in v (at names v): the search only knows the member, the
 * message wants its path. Returns -1 once there, else 0. */
static int fail_duplicate_at(struct ctx *c, const cJSON *v, const struct loc *at, const cJSON *dup)
{
    size_t i = 0;

    for (const cJSON *it = v->child; it != NULL; it = it->next, i++) {
        const struct loc *here = cJSON_IsObject(v) ? KEY(at, it->string) : IDX(at, i);

        if (it == dup)
            return fail(c, here, "duplicate key");
        if (fail_duplicate_at(c, it, here, dup) == -1)
            return -1;
    }
    return 0;
}

/* cJSON keeps every copy of a repeated key; which one wins would be an accident of lookup. */
static int check_duplicates(struct ctx *c, const cJSON *v)
{
    const cJSON *dup;
    int rc = util_find_duplicate(v, &dup);

    if (rc == -1)
        return oom(c);
    if (rc == 1 && fail_duplicate_at(c, v, NULL, dup) == 0)
        return fail(c, NULL, "duplicate key"); /* not reached: dup is in v */
    return rc == 0 ? 0 : -1;
}

/* Reads path through the source and parses it; *out is an object on success (caller frees). */
static int load_json(struct ctx *c, const char *path, cJSON **out)
{
    char *buf = NULL;
    const char *end = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (c->src->read(c->src->ctx, path, &buf, &len) == -1) {
        int e = errno;

        if (e == EFBIG)
            return fail(c, NULL, "larger than %u bytes, the limit for a configuration file",
                        CONFIG_MAX_FILE_BYTES);
        if (e == EINVAL)
            return fail(c, NULL, "not a regular file");
        return fail(c, NULL, "cannot read: %s", strerror(e));
    }
    if (len > CONFIG_MAX_FILE_BYTES) {
        fail_msg(c, NULL, "larger than %u bytes, the limit for a configuration file",
                 CONFIG_MAX_FILE_BYTES);
        goto out;
    }
    if (check_encoding(c, buf, len) == -1)
        goto out;
    /* len + 1: with require_null_terminated, cJSON wants the terminator inside the length. */
    *out = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
    if (*out == NULL) {
        size_t off = end != NULL && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;

        /* Where an object key was expected (",," or ",}" or "{,"), cJSON points one past the
         * offending character: step back onto it. */
        if (off >= 2 && buf[off - 1] != '"' && buf[off - 1] != ' ' && buf[off - 1] != '\t' &&
            buf[off - 1] != '\n' && buf[off - 1] != '\r') {
            size_t k = off - 1;
            while (k > 0 && (buf[k - 1] == ' ' || buf[k - 1] == '\t' || buf[k - 1] == '\n' ||
                             buf[k - 1] == '\r'))
                k--;
            if (k > 0 && (buf[k - 1] == ',' || buf[k - 1] == '{'))
                off--;
        }
        fail_at_offset(c, buf, off, "invalid JSON");
        goto out;
    }
    if (check_lexical(c, buf, len) == -1 || check_duplicates(c, *out) == -1)
        goto out;
    if (!cJSON_IsObject(*out)) {
        fail_msg(c, NULL, "expected a JSON object at the top level");
        goto out;
    }
    rc = 0;
out:
    if (rc == -1) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    free(buf);
    return rc;
}

/* ---- typed getters ------------------------------------------------------------------------ */

/* The member named key, or NULL when it is absent or null (null means "the default"). */
static const cJSON *member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    return v != NULL && !cJSON_IsNull(v) ? v : NULL;
}

static int required(struct ctx *c, const cJSON *obj, const struct loc *at, const char *key,
                    const cJSON **out)
{
    *out = member(obj, key);
    if (*out == NULL)
        return fail(c, KEY(at, key), "is required");
    return 0;
}

/* keys: NULL-terminated list of the members allowed; anything else is a typo or a mistake. */
static int want_object(struct ctx *c, const cJSON *v, const struct loc *at,
                       const char *const keys[])
{
    const cJSON *it;

    if (!cJSON_IsObject(v))
        return fail(c, at, "expected an object");
    if (keys == NULL)
        return 0;
    for (it = v->child; it != NULL; it = it->next) {
        size_t i;

        for (i = 0; keys[i] != NULL; i++)
            if (strcmp(it->string, keys[i]) == 0)
                break;
        if (keys[i] == NULL)
            return fail(c, KEY(at, it->string), "unknown key");
    }
    return 0;
}

static size_t count_items(const cJSON *v)
{
    const cJSON *it;
    size_t n = 0;

    for (it = v->child; it != NULL; it = it->next)
        n++;
    return n;
}

static int want_array(struct ctx *c, const cJSON *v, const struct loc *at, size_t max, size_t *n)
{
    *n = 0;
    if (!cJSON_IsArray(v))
        return fail(c, at, "expected an array");
    *n = count_items(v);
    if (*n > max)
        return fail(c, at, "more than %zu entries", max);
    return 0;
}

static int want_map(struct ctx *c, const cJSON *v, const struct loc *at, size_t max, size_t *n)
{
    *n = 0;
    if (!cJSON_IsObject(v))
        return fail(c, at, "expected an object");
    *n = count_items(v);
    if (*n > max)
        return fail(c, at, "more than %zu entries", max);
    return 0;
}

static int get_string(struct ctx *c, const cJSON *v, const struct loc *at, const char **out)
{
    *out = NULL;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return fail(c, at, "expected a string");
    *out = v->valuestring;
    return 0;
}

/* A non-empty string of at most max bytes without control characters. */
static int get_text(struct ctx *c, const cJSON *v, const struct loc *at, size_t max,
                    const char **out)
{
    size_t len;

    if (get_string(c, v, at, out) == -1)
        return -1;
    len = strlen(*out);
    if (len == 0)
        return fail(c, at, "must not be empty");
    if (len > max)
        return fail(c, at, "longer than %zu bytes", max);
    for (const char *s = *out; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return fail(c, at, "must not contain control characters");
    return 0;
}

static int dup_str(struct ctx *c, const char *s, char **out)
{
    *out = strdup(s);
    return *out == NULL ? oom(c) : 0;
}

static int dup_text(struct ctx *c, const cJSON *v, const struct loc *at, size_t max, char **out)
{
    const char *s;

    if (get_text(c, v, at, max, &s) == -1)
        return -1;
    return dup_str(c, s, out);
}

/* A text that must satisfy ok(); rule is the message when it does not. */
static int dup_checked(struct ctx *c, const cJSON *v, const struct loc *at, size_t max,
                       bool (*ok)(const char *), const char *rule, char **out)
{
    const char *s;

    if (get_text(c, v, at, max, &s) == -1)
        return -1;
    if (!ok(s))
        return fail(c, at, "%s", rule);
    return dup_str(c, s, out);
}

static int dup_name(struct ctx *c, const cJSON *v, const struct loc *at, char **out)
{
    return dup_checked(c, v, at, CONFIG_NAME_MAX - 1, is_name, NAME_RULE, out);
}

/* A path, made absolute against the configuration's folder. */
static int dup_path(struct ctx *c, const cJSON *v, const struct loc *at, char **out)
{
    const char *s;

    if (get_text(c, v, at, CONFIG_PATH_MAX, &s) == -1)
        return -1;
    *out = path_absolute(c->cfg->dir, s);
    if (*out == NULL)
        return oom(c);
    if (strlen(*out) > CONFIG_PATH_MAX)
        return fail(c, at, "longer than %d bytes once resolved", CONFIG_PATH_MAX);
    return 0;
}

static int get_uint(struct ctx *c, const cJSON *v, const struct loc *at, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    double d;
    uint64_t u;

    /* max stays below 2^53, so every integer in range is exact as a double. */
    *out = 0;
    if (!cJSON_IsNumber(v))
        goto bad;
    d = v->valuedouble;
    if (!(d >= (double)min && d <= (double)max))
        goto bad;
    u = (uint64_t)d;
    if ((double)u != d)
        goto bad;
    *out = u;
    return 0;
bad:
    return fail(c, at, "expected an integer from %" PRIu64 " to %" PRIu64, min, max);
}

static int get_u32(struct ctx *c, const cJSON *obj, const struct loc *at, const char *key,
                   uint32_t min, uint32_t max, uint32_t *out)
{
    const cJSON *v = member(obj, key);
    uint64_t u;

    if (v == NULL)
        return 0;
    if (get_uint(c, v, KEY(at, key), min, max, &u) == -1)
        return -1;
    *out = (uint32_t)u;
    return 0;
}

static int get_bool(struct ctx *c, const cJSON *v, const struct loc *at, bool *out)
{
    if (!cJSON_IsBool(v))
        return fail(c, at, "expected true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* names: NULL-terminated; *out is the index of the one given. */
static int get_enum(struct ctx *c, const cJSON *v, const struct loc *at, const char *const names[],
                    int *out)
{
    char rule[CONFIG_ERR_MAX];
    size_t pos = 0, n;

    *out = 0;
    if (cJSON_IsString(v)) {
        for (n = 0; names[n] != NULL; n++) {
            if (strcmp(v->valuestring, names[n]) == 0) {
                *out = (int)n;
                return 0;
            }
        }
    }
    for (n = 0; names[n] != NULL; n++)
        ;
    put(rule, sizeof rule, &pos, "expected ", 9);
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";

        put(rule, sizeof rule, &pos, sep, strlen(sep));
        put(rule, sizeof rule, &pos, "\"", 1);
        put(rule, sizeof rule, &pos, names[i], strlen(names[i]));
        put(rule, sizeof rule, &pos, "\"", 1);
    }
    return fail(c, at, "%s", rule);
}

/* An array of texts, each passing ok() when given; *out is NULL when the array is empty.
 * *out and *n are set before the elements are filled, so the owner frees a partial array. */
static int get_text_array(struct ctx *c, const cJSON *v, const struct loc *at, size_t maxlen,
                          bool (*ok)(const char *), const char *rule, char ***out, size_t *n)
{
    const cJSON *it;
    size_t count, i = 0;

    if (want_array(c, v, at, CONFIG_MAX_LIST, &count) == -1)
        return -1;
    if (count == 0)
        return 0;
    *out = calloc(count, sizeof **out);
    if (*out == NULL)
        return oom(c);
    *n = count;
    for (it = v->child; it != NULL; it = it->next) {
        const struct loc *el = IDX(at, i);

        if (ok != NULL) {
            if (dup_checked(c, it, el, maxlen, ok, rule, &(*out)[i]) == -1)
                return -1;
        } else if (dup_text(c, it, el, maxlen, &(*out)[i]) == -1) {
            return -1;
        }
        i++;
    }
    return 0;
}

/* ---- mcpvisor.json ------------------------------------------------------------------------ */

static int parse_address(struct ctx *c, const char *s, const struct loc *at,
                         struct config_listener *l)
{
    char host[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    const char *port;
    size_t hlen;
    unsigned long p = 0;
    int af;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            goto bad;
        af = AF_INET6;
        hlen = (size_t)(close - s) - 1;
        port = close + 2;
        s++;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            goto bad;
        af = AF_INET;
        hlen = (size_t)(colon - s);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof host)
        goto bad;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(af, host, addr) != 1)
        goto bad;
    if (port[0] == '\0' || strlen(port) > 5)
        return fail(c, at, "port must be from 0 to 65535");
    for (const char *d = port; *d != '\0'; d++) {
        if (!is_digit(*d))
            return fail(c, at, "port must be from 0 to 65535");
        p = p * 10 + (unsigned long)(*d - '0');
    }
    if (p > 65535)
        return fail(c, at, "port must be from 0 to 65535");
    l->port = (uint16_t)p;
    if (af == AF_INET) {
        l->loopback = addr[0] == 127;
    } else {
        const struct in6_addr *a6 = (const struct in6_addr *)addr;

        l->loopback = IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && addr[12] == 127);
    }
    return dup_str(c, host, &l->host);
bad:
    return fail(c, at, "expected \"IPv4:port\" or \"[IPv6]:port\" with a numeric host");
}

static int parse_listener(struct ctx *c, const cJSON *v, const struct loc *at,
                          struct config_listener *l)
{
    static const char *const keys[] = {"address", "tls", "admin", "max_connections", NULL};
    static const char *const tls_keys[] = {"cert", "key", NULL};
    const cJSON *addr, *tls, *admin;

    if (want_object(c, v, at, keys) == -1 || required(c, v, at, "address", &addr) == -1)
        return -1;
    if (dup_text(c, addr, KEY(at, "address"), 64, &l->address) == -1 ||
        parse_address(c, l->address, KEY(at, "address"), l) == -1)
        return -1;
    if ((tls = member(v, "tls")) != NULL) {
        const struct loc *tat = KEY(at, "tls");
        const cJSON *cert, *key;

        if (want_object(c, tls, tat, tls_keys) == -1 ||
            required(c, tls, tat, "cert", &cert) == -1 || required(c, tls, tat, "key", &key) == -1)
            return -1;
        if (dup_path(c, cert, KEY(tat, "cert"), &l->tls_cert) == -1 ||
            dup_path(c, key, KEY(tat, "key"), &l->tls_key) == -1)
            return -1;
    }
    if ((admin = member(v, "admin")) != NULL &&
        get_bool(c, admin, KEY(at, "admin"), &l->admin) == -1)
        return -1;
    if (get_u32(c, v, at, "max_connections", 1, 1000000, &l->max_connections) == -1)
        return -1;
    return 0;
}

static bool same_address(const struct config_listener *a, const struct config_listener *b)
{
    unsigned char x[sizeof(struct in6_addr)], y[sizeof(struct in6_addr)];
    int af = strchr(a->host, ':') != NULL ? AF_INET6 : AF_INET;

    if (a->port != b->port || a->port == 0 || (strchr(b->host, ':') != NULL) != (af == AF_INET6))
        return false;
    if (inet_pton(af, a->host, x) != 1 || inet_pton(af, b->host, y) != 1)
        return false;
    return memcmp(x, y, af == AF_INET6 ? 16 : 4) == 0;
}

static int parse_listen(struct ctx *c, const cJSON *v)
{
    struct config *cfg = c->cfg;
    const struct loc *at = KEY(NULL, "listen");
    const cJSON *it;
    size_t n, i = 0;

    if (v == NULL) {
        struct config_listener *l = &cfg->listeners[0];

        cfg->nlisteners = 1;
        l->port = 8080;
        l->loopback = true;
        if (dup_str(c, "127.0.0.1:8080", &l->address) == -1 ||
            dup_str(c, "127.0.0.1", &l->host) == -1)
            return -1;
        return 0;
    }
    if (want_array(c, v, at, SIZE_MAX, &n) == -1)
        return -1;
    if (n < 1 || n > CONFIG_MAX_LISTENERS)
        return fail(c, at, "expected 1 to %d listeners", CONFIG_MAX_LISTENERS);
    for (it = v->child; it != NULL; it = it->next) {
        cfg->nlisteners = i + 1;
        if (parse_listener(c, it, IDX(at, i), &cfg->listeners[i]) == -1)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (same_address(&cfg->listeners[j], &cfg->listeners[i]))
                return fail(c, KEY(IDX(at, i), "address"), "same address as /listen/%zu", j);
        i++;
    }
    return 0;
}

struct limit_spec {
    const char *key;
    size_t offset, size;
    uint64_t min, max, def;
};

#define LIMIT(f, lo, hi, d)                                                                        \
    {                                                                                              \
        .key = #f, .offset = offsetof(struct config_limits, f),                                    \
        .size = sizeof(((struct config_limits *)0)->f), .min = (lo), .max = (hi), .def = (d)       \
    }

static const struct limit_spec limit_specs[] = {
    LIMIT(max_body_bytes, KIB, 64 * MIB, MIB),
    LIMIT(max_header_bytes, KIB, MIB, 16 * KIB),
    LIMIT(max_connections, 1, 1000000, 1024),
    LIMIT(max_connections_per_address, 1, 1000000, 256),
    LIMIT(header_timeout_ms, 100, 600000, 10000),
    LIMIT(body_timeout_ms, 100, 3600000, 30000),
    LIMIT(keepalive_timeout_ms, 100, 3600000, 60000),
    LIMIT(max_stream_buffer_bytes, 64 * KIB, 1024 * MIB, 4 * MIB),
    LIMIT(max_buffered_bytes, MIB, 64 * GIB, 256 * MIB),
    LIMIT(max_buffered_bytes_per_principal, 64 * KIB, 64 * GIB, 32 * MIB),
    LIMIT(max_buffered_bytes_per_tenant, 64 * KIB, 64 * GIB, 64 * MIB),
    LIMIT(max_sessions, 1, 1000000, 10000),
    LIMIT(max_sessions_per_tenant, 1, 1000000, 1000),
    LIMIT(max_sessions_per_principal, 1, 1000000, 256),
    LIMIT(max_spawns_in_flight, 1, 4096, 32),
    LIMIT(max_children, 1, 1000000, 10000),
    LIMIT(max_spawns_in_flight_per_tenant, 1, 4096, 8),
    LIMIT(spawns_per_minute, 1, 1000000, 3000),
    LIMIT(spawns_per_minute_per_tenant, 1, 1000000, 600),
    LIMIT(session_idle_s, 1, 604800, 900),
    LIMIT(max_line_bytes, KIB, 64 * MIB, 4 * MIB),
    LIMIT(request_timeout_ms, 1, 86400000, 60000),
    LIMIT(max_pending_per_session, 1, 65536, 64),
    LIMIT(max_requests_in_flight_per_principal, 1, 1000000, 256),
    LIMIT(max_requests_in_flight_per_tenant, 1, 1000000, 1024),
    LIMIT(max_child_write_bytes, KIB, 1024 * MIB, 8 * MIB),
    LIMIT(sse_replay_events, 0, 65536, 256),
    LIMIT(stderr_lines_per_s, 1, 1000000, 50),
    LIMIT(spawn_timeout_ms, 1, 600000, 10000),
    LIMIT(max_listing_tools, 1, 100000, 1000),
    LIMIT(max_listing_pages, 1, 10000, 20),
    LIMIT(max_listing_schema_nodes, 100, 100000000, 100000),
    LIMIT(max_schema_nodes_per_tenant, 100, 1000000000, 1000000),
    LIMIT(max_schema_nodes, 100, 1000000000, 4000000),
    LIMIT(listing_tools_per_minute, 1, 100000000, 10000),
    LIMIT(listing_bytes_per_minute, KIB, 1024 * GIB, 32 * MIB),
    LIMIT(listing_schema_nodes_per_minute, 100, 1000000000, 400000),
};

static void limit_store(struct config_limits *lim, const struct limit_spec *spec, uint64_t v)
{
    char *field = (char *)lim + spec->offset;

    if (spec->size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;

        memcpy(field, &x, sizeof x);
    } else {
        uint64_t x = v;

        memcpy(field, &x, sizeof x);
    }
}

static int parse_rate(struct ctx *c, const cJSON *v, const struct loc *at, double *per_s);

/* limits.principal_rate and limits.principal_burst: a per-principal request ceiling, off unless
 * a rate is given; the burst defaults to one second of the rate, at least 1. */
static int parse_principal_rate(struct ctx *c, const cJSON *v, const struct loc *at)
{
    struct config_limits *lim = &c->cfg->limits;
    const cJSON *rate = member(v, "principal_rate"), *burst = member(v, "principal_burst");
    uint64_t u;

    if (rate != NULL && !cJSON_IsNull(rate) &&
        parse_rate(c, rate, KEY(at, "principal_rate"), &lim->principal_rate_per_s) == -1)
        return -1;
    if (burst != NULL && !cJSON_IsNull(burst)) {
        if (get_uint(c, burst, KEY(at, "principal_burst"), 1, 1000000, &u) == -1)
            return -1;
        if (lim->principal_rate_per_s == 0)
            return fail(c, KEY(at, "principal_burst"), "needs /limits/principal_rate");
        lim->principal_burst = (uint32_t)u;
    } else if (lim->principal_rate_per_s > 0) {
        lim->principal_burst = (uint32_t)lim->principal_rate_per_s;
        if ((double)lim->principal_burst < lim->principal_rate_per_s)
            lim->principal_burst++;
        if (lim->principal_burst < 1)
            lim->principal_burst = 1;
    }
    return 0;
}

static int parse_limits(struct ctx *c, const cJSON *v)
{
    const size_t nspecs = sizeof limit_specs / sizeof limit_specs[0];
    const struct loc *at = KEY(NULL, "limits");
    const cJSON *it;

    for (size_t i = 0; i < nspecs; i++)
        limit_store(&c->cfg->limits, &limit_specs[i], limit_specs[i].def);
    if (v == NULL)
        return 0;
    if (want_object(c, v, at, NULL) == -1)
        return -1;
    for (it = v->child; it != NULL; it = it->next) {
        const struct limit_spec *spec = NULL;
        uint64_t u;

        if (strcmp(it->string, "principal_rate") == 0 || strcmp(it->string, "principal_burst") == 0)
            continue; /* parse_principal_rate */
        for (size_t i = 0; i < nspecs && spec == NULL; i++)
            if (strcmp(it->string, limit_specs[i].key) == 0)
                spec = &limit_specs[i];
        if (spec == NULL)
            return fail(c, KEY(at, it->string), "unknown key");
        if (cJSON_IsNull(it))
            continue;
        if (get_uint(c, it, KEY(at, it->string), spec->min, spec->max, &u) == -1)
            return -1;
        limit_store(&c->cfg->limits, spec, u);
    }
    /* A budget smaller than one listing would refuse a server whose every listing is legal. */
    const struct config_limits *lim = &c->cfg->limits;
    if (lim->listing_tools_per_minute < lim->max_listing_tools)
        return fail(c, KEY(at, "listing_tools_per_minute"),
                    "must be at least /limits/max_listing_tools (%u)", lim->max_listing_tools);
    if (lim->listing_schema_nodes_per_minute < lim->max_listing_schema_nodes)
        return fail(c, KEY(at, "listing_schema_nodes_per_minute"),
                    "must be at least /limits/max_listing_schema_nodes (%zu)",
                    lim->max_listing_schema_nodes);
    if (lim->listing_bytes_per_minute < lim->max_line_bytes)
        return fail(c, KEY(at, "listing_bytes_per_minute"),
                    "must be at least /limits/max_line_bytes (%zu)", lim->max_line_bytes);
    if (lim->max_schema_nodes_per_tenant < lim->max_listing_schema_nodes ||
        lim->max_schema_nodes < lim->max_schema_nodes_per_tenant)
        return fail(c, KEY(at, "max_schema_nodes_per_tenant"),
                    "needs max_listing_schema_nodes <= max_schema_nodes_per_tenant <= "
                    "max_schema_nodes");
    return parse_principal_rate(c, v, at);
}

static int parse_audit(struct ctx *c, const cJSON *v)
{
    static const char *const keys[] = {"path", "sync", "batch_ms", NULL};
    static const char *const syncs[] = {"always", "batch", "none", NULL};
    const struct loc *at = KEY(NULL, "audit");
    const cJSON *path, *sync;
    int e;

    c->cfg->audit_sync = CONFIG_AUDIT_SYNC_ALWAYS;
    c->cfg->audit_batch_ms = 100;
    if (v == NULL)
        return 0;
    if (want_object(c, v, at, keys) == -1 ||
        get_u32(c, v, at, "batch_ms", 1, 60000, &c->cfg->audit_batch_ms) == -1)
        return -1;
    if ((path = member(v, "path")) != NULL &&
        dup_path(c, path, KEY(at, "path"), &c->cfg->audit_path) == -1)
        return -1;
    if ((sync = member(v, "sync")) != NULL) {
        if (get_enum(c, sync, KEY(at, "sync"), syncs, &e) == -1)
            return -1;
        c->cfg->audit_sync = (enum config_audit_sync)e;
    }
    return 0;
}

static int parse_tenant(struct ctx *c, const cJSON *v, const struct loc *at,
                        struct config_tenant *t)
{
    static const char *const keys[] = {"uid",
                                       "gid",
                                       "servers",
                                       "quota_scale",
                                       "secrets_dir",
                                       "max_sessions",
                                       "max_requests_in_flight",
                                       "max_buffered_bytes",
                                       NULL};
    const cJSON *uid = member(v, "uid"), *gid = member(v, "gid"), *m;

    t->quota_scale = 1.0;
    if (want_object(c, v, at, keys) == -1)
        return -1;
    if (uid != NULL || gid != NULL) {
        uint64_t u, g;

        if (uid == NULL)
            return fail(c, KEY(at, "uid"), "is required when gid is given");
        if (gid == NULL)
            return fail(c, KEY(at, "gid"), "is required when uid is given");
        /* Children run as these ids; 0 would hand a tenant's server root. */
        if (get_uint(c, uid, KEY(at, "uid"), 0, 4294967294u, &u) == -1 ||
            get_uint(c, gid, KEY(at, "gid"), 0, 4294967294u, &g) == -1)
            return -1;
        if (u == 0)
            return fail(c, KEY(at, "uid"), "must not be 0 (root)");
        if (g == 0)
            return fail(c, KEY(at, "gid"), "must not be 0 (root)");
        t->has_ids = true;
        t->uid = (uid_t)u;
        t->gid = (gid_t)g;
    }
    if ((m = member(v, "servers")) != NULL &&
        get_text_array(c, m, KEY(at, "servers"), CONFIG_NAME_MAX - 1, is_name, NAME_RULE,
                       &t->servers, &t->nservers) == -1)
        return -1;
    if ((m = member(v, "quota_scale")) != NULL) {
        if (!cJSON_IsNumber(m) || !(m->valuedouble > 0.0 && m->valuedouble <= 1000.0))
            return fail(c, KEY(at, "quota_scale"),
                        "expected a number greater than 0 and at most 1000");
        t->quota_scale = m->valuedouble;
    }
    if ((m = member(v, "secrets_dir")) != NULL &&
        dup_path(c, m, KEY(at, "secrets_dir"), &t->secrets_dir) == -1)
        return -1;
    if (get_u32(c, v, at, "max_sessions", 1, 1000000, &t->max_sessions) == -1 ||
        get_u32(c, v, at, "max_requests_in_flight", 1, 1000000, &t->max_requests_in_flight) == -1)
        return -1;
    const cJSON *mb = member(v, "max_buffered_bytes");
    if (mb != NULL && get_uint(c, mb, KEY(at, "max_buffered_bytes"), 64 * KIB, 64 * GIB,
                               &t->max_buffered_bytes) == -1)
        return -1;
    return 0;
}

static int parse_tenants(struct ctx *c, const cJSON *v)
{
    struct config *cfg = c->cfg;
    const struct loc *at = KEY(NULL, "tenants");
    const cJSON *it;
    size_t n, i = 0;

    if (v == NULL)
        return 0;
    if (want_map(c, v, at, CONFIG_MAX_TENANTS, &n) == -1)
        return -1;
    if (n == 0)
        return 0;
    cfg->tenants = calloc(n, sizeof *cfg->tenants);
    if (cfg->tenants == NULL)
        return oom(c);
    cfg->ntenants = n;
    for (it = v->child; it != NULL; it = it->next) {
        const struct loc *tat = KEY(at, it->string);
        struct config_tenant *t = &cfg->tenants[i];

        if (!is_name(it->string))
            return fail(c, tat, NAME_RULE);
        if (dup_str(c, it->string, &t->name) == -1 || parse_tenant(c, it, tat, t) == -1)
            return -1;
        /* A shared uid would let one tenant's servers signal and read the other's. */
        for (size_t j = 0; j < i && t->has_ids; j++)
            if (cfg->tenants[j].has_ids && cfg->tenants[j].uid == t->uid)
                return fail(c, KEY(tat, "uid"), "same uid as tenant \"%s\"", cfg->tenants[j].name);
        i++;
    }
    return 0;
}

/* Where tenants without uid and gid get theirs (tenantids.c). Defaults: a range no distribution
 * or systemd allocates from (system accounts, subordinate ids, DynamicUser= and container
 * ranges are all below it), and a state file in the daemon's state directory. */
static int parse_tenant_ids(struct ctx *c, const cJSON *v)
{
    static const char *const keys[] = {"from", "to", "state_file", NULL};
    const struct loc *at = KEY(NULL, "tenant_ids");
    struct config *cfg = c->cfg;
    const cJSON *m;

    cfg->tenant_ids_from = 2000000000u;
    cfg->tenant_ids_to = 2000999999u;
    if (v != NULL && (want_object(c, v, at, keys) == -1 ||
                      get_u32(c, v, at, "from", 1000, 4294967294u, &cfg->tenant_ids_from) == -1 ||
                      get_u32(c, v, at, "to", 1000, 4294967294u, &cfg->tenant_ids_to) == -1))
        return -1;
    if (cfg->tenant_ids_from > cfg->tenant_ids_to)
        return fail(c, KEY(at, "to"), "must not be below from (%" PRIu32 ")", cfg->tenant_ids_from);
    if (v != NULL && (m = member(v, "state_file")) != NULL)
        return dup_path(c, m, KEY(at, "state_file"), &cfg->tenant_ids_state);
    cfg->tenant_ids_state = strdup("/var/lib/mcpvisor/tenant-ids.json");
    return cfg->tenant_ids_state != NULL ? 0 : oom(c);
}

/* tenant, user, agent, scopes: shared by API-key records and auth.anonymous. */
static int parse_principal(struct ctx *c, const cJSON *v, const struct loc *at,
                           const char *default_user, struct config_principal *p)
{
    const cJSON *m;

    if (required(c, v, at, "tenant", &m) == -1 ||
        dup_name(c, m, KEY(at, "tenant"), &p->tenant) == -1)
        return -1;
    if (config_tenant_find(c->cfg, p->tenant) == NULL)
        return fail(c, KEY(at, "tenant"), "unknown tenant \"%s\"", p->tenant);
    if ((m = member(v, "user")) != NULL) {
        if (dup_text(c, m, KEY(at, "user"), CONFIG_TEXT_MAX, &p->user) == -1)
            return -1;
    } else if (default_user == NULL) {
        return fail(c, KEY(at, "user"), "is required");
    } else if (dup_str(c, default_user, &p->user) == -1) {
        return -1;
    }
    if ((m = member(v, "agent")) != NULL &&
        dup_text(c, m, KEY(at, "agent"), CONFIG_TEXT_MAX, &p->agent) == -1)
        return -1;
    if ((m = member(v, "scopes")) != NULL &&
        get_text_array(c, m, KEY(at, "scopes"), CONFIG_TEXT_MAX, is_scope,
                       "expected a scope: printable ASCII without spaces, quotes or backslashes",
                       &p->scopes, &p->nscopes) == -1)
        return -1;
    return 0;
}

static int parse_jwt(struct ctx *c, const cJSON *v, const struct loc *at)
{
    static const char *const keys[] = {
        "issuer", "audience", "jwks_url", "jwks_file", "authorization_servers",
        "claims", "leeway_s", NULL};
    static const char *const claim_keys[] = {"tenant", "agent", NULL};
    struct config *cfg = c->cfg;
    const cJSON *m, *url, *file, *claims;

    cfg->has_jwt = true;
    cfg->jwt_leeway_s = 60;
    if (want_object(c, v, at, keys) == -1)
        return -1;
    if (required(c, v, at, "issuer", &m) == -1 ||
        dup_text(c, m, KEY(at, "issuer"), CONFIG_URL_MAX, &cfg->jwt_issuer) == -1)
        return -1;
    if (required(c, v, at, "audience", &m) == -1 ||
        dup_text(c, m, KEY(at, "audience"), CONFIG_URL_MAX, &cfg->jwt_audience) == -1)
        return -1;
    url = member(v, "jwks_url");
    file = member(v, "jwks_file");
    if (url != NULL && file != NULL)
        return fail(c, KEY(at, "jwks_file"), "give jwks_url or jwks_file, not both");
    if (url == NULL && file == NULL)
        return fail(c, KEY(at, "jwks_url"), "jwks_url or jwks_file is required");
    if (url != NULL &&
        dup_text(c, url, KEY(at, "jwks_url"), CONFIG_URL_MAX, &cfg->jwt_jwks_url) == -1)
        return -1;
    if (cfg->jwt_jwks_url != NULL && !is_url(cfg->jwt_jwks_url, URL_FETCH))
        return fail(c, KEY(at, "jwks_url"),
                    "expected an https:// URL (http:// only to 127.0.0.1, localhost or [::1])");
    if (file != NULL && dup_path(c, file, KEY(at, "jwks_file"), &cfg->jwt_jwks_file) == -1)
        return -1;
    if ((m = member(v, "authorization_servers")) != NULL) {
        if (get_text_array(c, m, KEY(at, "authorization_servers"), CONFIG_URL_MAX, NULL, NULL,
                           &cfg->jwt_authorization_servers, &cfg->njwt_authorization_servers) == -1)
            return -1;
        for (size_t i = 0; i < cfg->njwt_authorization_servers; i++)
            if (!is_url(cfg->jwt_authorization_servers[i], URL_ANY))
                return fail(c, IDX(KEY(at, "authorization_servers"), i),
                            "expected an http:// or https:// URL");
    } else {
        /* RFC 9728 metadata needs at least one; the issuer is the one that signs. */
        cfg->jwt_authorization_servers = calloc(1, sizeof(char *));
        if (cfg->jwt_authorization_servers == NULL)
            return oom(c);
        cfg->njwt_authorization_servers = 1;
        if (dup_str(c, cfg->jwt_issuer, &cfg->jwt_authorization_servers[0]) == -1)
            return -1;
    }
    if ((claims = member(v, "claims")) != NULL) {
        const struct loc *cat = KEY(at, "claims");

        if (want_object(c, claims, cat, claim_keys) == -1)
            return -1;
        if ((m = member(claims, "tenant")) != NULL &&
            dup_text(c, m, KEY(cat, "tenant"), CONFIG_TEXT_MAX, &cfg->jwt_claim_tenant) == -1)
            return -1;
        if ((m = member(claims, "agent")) != NULL &&
            dup_text(c, m, KEY(cat, "agent"), CONFIG_TEXT_MAX, &cfg->jwt_claim_agent) == -1)
            return -1;
    }
    if (cfg->jwt_claim_tenant == NULL && dup_str(c, "tenant", &cfg->jwt_claim_tenant) == -1)
        return -1;
    if (cfg->jwt_claim_agent == NULL && dup_str(c, "azp", &cfg->jwt_claim_agent) == -1)
        return -1;
    return get_u32(c, v, at, "leeway_s", 0, 3600, &cfg->jwt_leeway_s);
}

static int parse_auth(struct ctx *c, const cJSON *v)
{
    static const char *const keys[] = {"jwt", "api_keys_file", "anonymous", NULL};
    static const char *const anon_keys[] = {"tenant", "user", "agent", "scopes", NULL};
    struct config *cfg = c->cfg;
    const struct loc *at = KEY(NULL, "auth");
    const cJSON *m;

    if (v == NULL)
        return 0;
    if (want_object(c, v, at, keys) == -1)
        return -1;
    if ((m = member(v, "jwt")) != NULL && parse_jwt(c, m, KEY(at, "jwt")) == -1)
        return -1;
    if ((m = member(v, "api_keys_file")) != NULL &&
        dup_path(c, m, KEY(at, "api_keys_file"), &cfg->api_keys_file) == -1)
        return -1;
    if ((m = member(v, "anonymous")) != NULL) {
        const struct loc *aat = KEY(at, "anonymous");

        cfg->has_anonymous = true;
        if (want_object(c, m, aat, anon_keys) == -1 ||
            parse_principal(c, m, aat, "anonymous", &cfg->anonymous) == -1)
            return -1;
        /* Credential-free access must never be reachable from another machine. */
        for (size_t i = 0; i < cfg->nlisteners; i++)
            if (!cfg->listeners[i].loopback)
                return fail(c, aat, "allowed only when every listener is on loopback");
    }
    return 0;
}

static int parse_main(struct ctx *c, const cJSON *root)
{
    static const char *const keys[] = {"listen",
                                       "public_url",
                                       "allowed_origins",
                                       "allowed_hosts",
                                       "user",
                                       "manifests_dir",
                                       "allow_weaker_sandbox",
                                       "auth",
                                       "tenants",
                                       "tenant_ids",
                                       "audit",
                                       "limits",
                                       NULL};
    struct config *cfg = c->cfg;
    const cJSON *m;

    if (want_object(c, root, NULL, keys) == -1 || parse_listen(c, member(root, "listen")) == -1)
        return -1;
    if ((m = member(root, "public_url")) != NULL) {
        if (dup_text(c, m, KEY(NULL, "public_url"), CONFIG_PUBLIC_URL_MAX, &cfg->public_url) == -1)
            return -1;
        if (!is_public_url(cfg->public_url))
            return fail(c, KEY(NULL, "public_url"),
                        "expected http:// or https://, a host, an optional port and an optional "
                        "path, with no user name, query or fragment");
    }
    if ((m = member(root, "allowed_origins")) != NULL &&
        get_text_array(c, m, KEY(NULL, "allowed_origins"), CONFIG_URL_MAX, NULL, NULL,
                       &cfg->allowed_origins, &cfg->nallowed_origins) == -1)
        return -1;
    for (size_t i = 0; i < cfg->nallowed_origins; i++)
        if (!is_url(cfg->allowed_origins[i], URL_ORIGIN))
            return fail(c, IDX(KEY(NULL, "allowed_origins"), i),
                        "expected an origin: http:// or https://, a host and an optional port, "
                        "nothing after");
    if ((m = member(root, "allowed_hosts")) != NULL &&
        get_text_array(c, m, KEY(NULL, "allowed_hosts"), CONFIG_TEXT_MAX, is_host_name,
                       "expected a host name or address, optionally with :port (1-65535)",
                       &cfg->allowed_hosts, &cfg->nallowed_hosts) == -1)
        return -1;
    if ((m = member(root, "allow_weaker_sandbox")) != NULL &&
        get_bool(c, m, KEY(NULL, "allow_weaker_sandbox"), &cfg->allow_weaker_sandbox) == -1)
        return -1;
    if ((m = member(root, "user")) != NULL) {
        if (dup_checked(c, m, KEY(NULL, "user"), 32, is_user_name,
                        "expected a user name: [A-Za-z_][A-Za-z0-9_.-]*, at most 32 characters",
                        &cfg->user) == -1)
            return -1;
    } else if (dup_str(c, "mcpvisor", &cfg->user) == -1) {
        return -1;
    }
    if ((m = member(root, "manifests_dir")) != NULL) {
        if (dup_path(c, m, KEY(NULL, "manifests_dir"), &cfg->manifests_dir) == -1)
            return -1;
    } else if ((cfg->manifests_dir = path_absolute(cfg->dir, "manifests")) == NULL) {
        return oom(c);
    }
    if (parse_limits(c, member(root, "limits")) == -1 ||
        parse_audit(c, member(root, "audit")) == -1)
        return -1;
    /* Tenants before auth: principals name tenants. */
    if (parse_tenants(c, member(root, "tenants")) == -1 ||
        parse_tenant_ids(c, member(root, "tenant_ids")) == -1)
        return -1;
    return parse_auth(c, member(root, "auth"));
}

/* ---- manifests ---------------------------------------------------------------------------- */

static int parse_command(struct ctx *c, const cJSON *v, const struct loc *at,
                         struct config_manifest *m)
{
    const cJSON *it;
    size_t n, i = 0;

    if (want_array(c, v, at, CONFIG_MAX_ARGS, &n) == -1)
        return -1;
    if (n == 0)
        return fail(c, at, "expected a non-empty array of strings");
    m->argv = calloc(n + 1, sizeof *m->argv);
    if (m->argv == NULL)
        return oom(c);
    m->argc = n;
    for (it = v->child; it != NULL; it = it->next) {
        const char *s;

        if (i == 0) {
            /* No PATH search: the spawner executes exactly this file. */
            if (dup_path(c, it, IDX(at, 0), &m->argv[0]) == -1)
                return -1;
        } else if (get_string(c, it, IDX(at, i), &s) == -1 || dup_str(c, s, &m->argv[i]) == -1) {
            return -1;
        }
        i++;
    }
    return 0;
}

/* env and secrets: maps from an environment variable to a string. */
static int parse_env_map(struct ctx *c, const cJSON *v, const struct loc *at, bool secrets,
                         const struct config_manifest *m, struct config_env **out, size_t *nout)
{
    const cJSON *it;
    size_t n, i = 0;

    if (want_map(c, v, at, CONFIG_MAX_LIST, &n) == -1)
        return -1;
    if (n == 0)
        return 0;
    *out = calloc(n, sizeof **out);
    if (*out == NULL)
        return oom(c);
    *nout = n;
    for (it = v->child; it != NULL; it = it->next) {
        const struct loc *kat = KEY(at, it->string);
        const char *s;

        if (!is_env_name(it->string))
            return fail(c, kat, "expected an environment variable name: [A-Za-z_][A-Za-z0-9_]*");
        if (dup_str(c, it->string, &(*out)[i].name) == -1)
            return -1;
        if (secrets) {
            for (size_t j = 0; j < m->nenv; j++)
                if (strcmp(m->env[j].name, it->string) == 0)
                    return fail(c, kat, "also set in /env");
            if (dup_checked(c, it, kat, CONFIG_TEXT_MAX, is_file_name,
                            "expected a file name (no '/', not . or ..)", &(*out)[i].value) == -1)
                return -1;
        } else if (get_string(c, it, kat, &s) == -1 || dup_str(c, s, &(*out)[i].value) == -1) {
            return -1;
        }
        i++;
    }
    return 0;
}

static int parse_pool(struct ctx *c, const cJSON *v, const struct loc *at,
                      struct config_manifest *m)
{
    static const char *const keys[] = {"min_idle",
                                       "max_per_tenant",
                                       "idle_timeout_s",
                                       "sessions_per_child",
                                       "max_calls",
                                       "max_age_s",
                                       NULL};
    const cJSON *w;

    if (want_object(c, v, at, keys) == -1 ||
        get_u32(c, v, at, "min_idle", 0, 1024, &m->pool_min_idle) == -1 ||
        get_u32(c, v, at, "max_per_tenant", 1, 1024, &m->pool_max_per_tenant) == -1 ||
        get_u32(c, v, at, "idle_timeout_s", 1, 86400, &m->pool_idle_timeout_s) == -1 ||
        get_u32(c, v, at, "sessions_per_child", 1, 100000, &m->pool_sessions_per_child) == -1 ||
        ((w = member(v, "max_calls")) != NULL &&
         get_uint(c, w, KEY(at, "max_calls"), 1, UINT64_C(1) << 40, &m->pool_max_calls) == -1) ||
        ((w = member(v, "max_age_s")) != NULL &&
         get_uint(c, w, KEY(at, "max_age_s"), 1, 31536000, &m->pool_max_age_s) == -1))
        return -1;
    if (m->pool_min_idle > m->pool_max_per_tenant)
        return fail(c, KEY(at, "min_idle"), "must not exceed max_per_tenant (%" PRIu32 ")",
                    m->pool_max_per_tenant);
    return 0;
}

static int parse_sandbox_limits(struct ctx *c, const cJSON *v, const struct loc *at,
                                struct config_sandbox *sb)
{
    static const struct {
        const char *key;
        size_t offset;
        uint64_t max;
    } specs[] = {
        {"memory_mb", offsetof(struct config_sandbox, memory_mb), 1ull << 24},
        {"cpu_s", offsetof(struct config_sandbox, cpu_s), 31536000},
        {"nofile", offsetof(struct config_sandbox, nofile), 1048576},
        {"nproc", offsetof(struct config_sandbox, nproc), 4194304},
        {"address_space_mb", offsetof(struct config_sandbox, address_space_mb), 1ull << 24},
    };
    const size_t nspecs = sizeof specs / sizeof specs[0];
    const cJSON *it;

    if (want_object(c, v, at, NULL) == -1)
        return -1;
    for (it = v->child; it != NULL; it = it->next) {
        size_t i;
        uint64_t u;

        for (i = 0; i < nspecs; i++)
            if (strcmp(it->string, specs[i].key) == 0)
                break;
        if (i == nspecs)
            return fail(c, KEY(at, it->string), "unknown key");
        if (cJSON_IsNull(it))
            continue;
        if (get_uint(c, it, KEY(at, it->string), 1, specs[i].max, &u) == -1)
            return -1;
        memcpy((char *)sb + specs[i].offset, &u, sizeof u);
    }
    return 0;
}

static int parse_seccomp(struct ctx *c, const cJSON *v, const struct loc *at,
                         struct config_sandbox *sb)
{
    static const char *const keys[] = {"action", "deny", "allow", NULL};
    static const char *const actions[] = {"kill", "errno", "log", NULL};
    static const char *const rule = "expected a system call name: [a-z0-9_], 1 to 63 characters";
    const cJSON *m;
    int e;

    if (want_object(c, v, at, keys) == -1)
        return -1;
    if ((m = member(v, "action")) != NULL) {
        if (get_enum(c, m, KEY(at, "action"), actions, &e) == -1)
            return -1;
        sb->seccomp_action = (enum config_seccomp_action)e;
    }
    if ((m = member(v, "deny")) != NULL &&
        get_text_array(c, m, KEY(at, "deny"), 63, is_syscall_name, rule, &sb->seccomp_deny,
                       &sb->nseccomp_deny) == -1)
        return -1;
    if ((m = member(v, "allow")) != NULL &&
        get_text_array(c, m, KEY(at, "allow"), 63, is_syscall_name, rule, &sb->seccomp_allow,
                       &sb->nseccomp_allow) == -1)
        return -1;
    for (size_t i = 0; i < sb->nseccomp_allow; i++)
        for (size_t j = 0; j < sb->nseccomp_deny; j++)
            if (strcmp(sb->seccomp_allow[i], sb->seccomp_deny[j]) == 0)
                return fail(c, IDX(KEY(at, "allow"), i), "\"%s\" is also in deny",
                            sb->seccomp_allow[i]);
    return 0;
}

static int sandbox_paths(struct ctx *c, const cJSON *v, const struct loc *at, char ***out,
                         size_t *n)
{
    if (v == NULL)
        return 0;
    if (get_text_array(c, v, at, CONFIG_PATH_MAX, is_sandbox_path,
                       "expected an absolute path without . or .. components", out, n) == -1)
        return -1;
    /* Store without repeated or trailing slashes, so later comparisons are plain strcmp. */
    for (size_t i = 0; i < *n; i++) {
        char *norm = path_absolute(NULL, (*out)[i]);

        if (norm == NULL)
            return oom(c);
        free((*out)[i]);
        (*out)[i] = norm;
    }
    return 0;
}

static int parse_sandbox(struct ctx *c, const cJSON *v, const struct loc *at,
                         struct config_sandbox *sb)
{
    static const char *const keys[] = {"network", "read_only", "read_write", "tmpfs",
                                       "limits",  "seccomp",   NULL};
    static const char *const networks[] = {"none", "host", NULL};
    const cJSON *m;
    int e;

    if (want_object(c, v, at, keys) == -1)
        return -1;
    if ((m = member(v, "network")) != NULL) {
        if (get_enum(c, m, KEY(at, "network"), networks, &e) == -1)
            return -1;
        sb->network = e == 1;
    }
    if (sandbox_paths(c, member(v, "read_only"), KEY(at, "read_only"), &sb->read_only,
                      &sb->nread_only) == -1 ||
        sandbox_paths(c, member(v, "read_write"), KEY(at, "read_write"), &sb->read_write,
                      &sb->nread_write) == -1 ||
        sandbox_paths(c, member(v, "tmpfs"), KEY(at, "tmpfs"), &sb->tmpfs, &sb->ntmpfs) == -1)
        return -1;
    if ((m = member(v, "limits")) != NULL &&
        parse_sandbox_limits(c, m, KEY(at, "limits"), sb) == -1)
        return -1;
    if ((m = member(v, "seccomp")) != NULL && parse_seccomp(c, m, KEY(at, "seccomp"), sb) == -1)
        return -1;
    return 0;
}

/* "N/s" or "N/min", N a positive integer without leading zeros. */
static int parse_rate(struct ctx *c, const cJSON *v, const struct loc *at, double *per_s)
{
    const char *s;
    uint64_t n = 0;
    size_t i = 0;

    if (!cJSON_IsString(v))
        return fail(c, at, RATE_RULE);
    s = v->valuestring;
    if (!(s[0] >= '1' && s[0] <= '9'))
        return fail(c, at, RATE_RULE);
    for (; is_digit(s[i]); i++) {
        if (i >= 9)
            return fail(c, at, "rate must be at most %d/s", CONFIG_RATE_MAX_PER_S);
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    if (strcmp(s + i, "/s") == 0) {
        *per_s = (double)n;
    } else if (strcmp(s + i, "/min") == 0) {
        *per_s = (double)n / 60.0;
    } else {
        return fail(c, at, RATE_RULE);
    }
    if (*per_s > CONFIG_RATE_MAX_PER_S)
        return fail(c, at, "rate must be at most %d/s", CONFIG_RATE_MAX_PER_S);
    return 0;
}

static int parse_quota(struct ctx *c, const cJSON *v, const struct loc *at, struct config_quota *q)
{
    static const char *const keys[] = {
        "rate", "burst", "concurrency", "timeout_ms", "max_args_bytes", "max_result_bytes", NULL};
    const cJSON *m;
    uint64_t u;

    if (want_object(c, v, at, keys) == -1)
        return -1;
    if ((m = member(v, "rate")) != NULL) {
        if (parse_rate(c, m, KEY(at, "rate"), &q->rate_per_s) == -1)
            return -1;
        q->has_rate = true;
    }
    if (get_u32(c, v, at, "burst", 0, 1000000, &q->burst) == -1 ||
        get_u32(c, v, at, "concurrency", 0, 65536, &q->concurrency) == -1 ||
        get_u32(c, v, at, "timeout_ms", 0, 86400000, &q->timeout_ms) == -1)
        return -1;
    if ((m = member(v, "max_args_bytes")) != NULL) {
        if (get_uint(c, m, KEY(at, "max_args_bytes"), 0, 64 * MIB, &u) == -1)
            return -1;
        q->max_args_bytes = (size_t)u;
    }
    if ((m = member(v, "max_result_bytes")) != NULL) {
        if (get_uint(c, m, KEY(at, "max_result_bytes"), 0, 64 * MIB, &u) == -1)
            return -1;
        q->max_result_bytes = (size_t)u;
    }
    return 0;
}

static int parse_tool(struct ctx *c, const cJSON *v, const struct loc *at, struct config_tool *t)
{
    static const char *const keys[] = {"version", "sha256", "scopes", "quota", "cache_ttl_s", NULL};
    const cJSON *m;
    const char *s;

    if (want_object(c, v, at, keys) == -1)
        return -1;
    if ((m = member(v, "version")) != NULL &&
        dup_text(c, m, KEY(at, "version"), CONFIG_TEXT_MAX, &t->version) == -1)
        return -1;
    if ((m = member(v, "sha256")) != NULL) {
        if (get_string(c, m, KEY(at, "sha256"), &s) == -1)
            return -1;
        if (!hex32(s, true, NULL))
            return fail(c, KEY(at, "sha256"), "expected 64 lower-case hex digits");
        if (dup_str(c, s, &t->sha256) == -1)
            return -1;
    }
    if ((m = member(v, "scopes")) != NULL &&
        get_text_array(c, m, KEY(at, "scopes"), CONFIG_TEXT_MAX, is_scope,
                       "expected a scope: printable ASCII without spaces, quotes or backslashes",
                       &t->scopes, &t->nscopes) == -1)
        return -1;
    if ((m = member(v, "quota")) != NULL && parse_quota(c, m, KEY(at, "quota"), &t->quota) == -1)
        return -1;
    if (get_u32(c, v, at, "cache_ttl_s", 0, 86400, &t->cache_ttl_s) == -1)
        return -1;
    if (t->cache_ttl_s > 0)
        return fail(c, KEY(at, "cache_ttl_s"),
                    "result caching is not supported yet: use 0 or leave it out");
    return 0;
}

static int parse_tools(struct ctx *c, const cJSON *v, struct config_manifest *m)
{
    const struct loc *at = KEY(NULL, "tools");
    const cJSON *it;
    size_t n, i = 0;

    if (want_map(c, v, at, CONFIG_MAX_LIST, &n) == -1)
        return -1;
    if (n == 0)
        return 0;
    m->tools = calloc(n, sizeof *m->tools);
    if (m->tools == NULL)
        return oom(c);
    m->ntools = n;
    for (it = v->child; it != NULL; it = it->next) {
        const struct loc *tat = KEY(at, it->string);

        if (!is_tool_name(it->string))
            return fail(c, tat,
                        "expected a tool name of 1 to 128 characters from "
                        "A-Z a-z 0-9 _ . - /");
        if (dup_str(c, it->string, &m->tools[i].name) == -1 ||
            parse_tool(c, it, tat, &m->tools[i]) == -1)
            return -1;
        i++;
    }
    return 0;
}

static int parse_manifest(struct ctx *c, const cJSON *root, const char *stem,
                          struct config_manifest *m)
{
    static const char *const keys[] = {
        "name",     "version",        "command", "env",
        "secrets",  "isolation",      "pool",    "sandbox",
        "pin_mode", "unlisted_tools", "tools",   "reads_principal_meta",
        NULL};
    static const char *const isolations[] = {"session", "tenant", "shared", NULL};
    static const char *const pin_modes[] = {"enforce", "warn", "off", NULL};
    static const char *const unlisted[] = {"deny", "allow", NULL};
    const cJSON *v;
    int e;

    m->pool_max_per_tenant = 64;
    m->pool_idle_timeout_s = 300;
    m->pool_sessions_per_child = 100;
    /* Tools the manifest does not name are served unless it says "deny": a server promoted
     * from stdio works before its first `mcpvisor pin --write`; `mcpvisor check` lists them. */
    m->unlisted_tools_allow = true;
    if (want_object(c, root, NULL, keys) == -1)
        return -1;
    if (required(c, root, NULL, "name", &v) == -1 ||
        dup_name(c, v, KEY(NULL, "name"), &m->name) == -1)
        return -1;
    /* The file name is how operators find a server's manifest; a mismatch would mislead. */
    if (strcmp(m->name, stem) != 0)
        return fail(c, KEY(NULL, "name"), "\"%s\" does not match the file name (expected \"%s\")",
                    m->name, stem);
    if ((v = member(root, "version")) != NULL &&
        dup_text(c, v, KEY(NULL, "version"), CONFIG_TEXT_MAX, &m->version) == -1)
        return -1;
    if (required(c, root, NULL, "command", &v) == -1 ||
        parse_command(c, v, KEY(NULL, "command"), m) == -1)
        return -1;
    if ((v = member(root, "env")) != NULL &&
        parse_env_map(c, v, KEY(NULL, "env"), false, m, &m->env, &m->nenv) == -1)
        return -1;
    if ((v = member(root, "secrets")) != NULL &&
        parse_env_map(c, v, KEY(NULL, "secrets"), true, m, &m->secrets, &m->nsecrets) == -1)
        return -1;
    if ((v = member(root, "isolation")) != NULL) {
        if (get_enum(c, v, KEY(NULL, "isolation"), isolations, &e) == -1)
            return -1;
        m->isolation = (enum config_isolation)e;
    }
    if ((v = member(root, "pool")) != NULL && parse_pool(c, v, KEY(NULL, "pool"), m) == -1)
        return -1;
    if ((v = member(root, "reads_principal_meta")) != NULL &&
        get_bool(c, v, KEY(NULL, "reads_principal_meta"), &m->reads_principal_meta) == -1)
        return -1;
    if (m->isolation == CONFIG_ISOLATION_SESSION &&
        (m->pool_max_calls > 0 || m->pool_max_age_s > 0))
        return fail(c, KEY(KEY(NULL, "pool"), m->pool_max_calls > 0 ? "max_calls" : "max_age_s"),
                    "applies to children shared by sessions (isolation \"tenant\" or \"shared\"); "
                    "a session's own child lives as long as its session: leave it out");
    if (m->reads_principal_meta && m->isolation != CONFIG_ISOLATION_SHARED)
        return fail(c, KEY(NULL, "reads_principal_meta"),
                    "only means something with isolation \"shared\" (mcpvisor adds the principal "
                    "to requests only then): leave it out");
    /* A shared child runs for no tenant in particular: no tenant's secrets_dir applies. */
    if (m->isolation == CONFIG_ISOLATION_SHARED && m->nsecrets > 0)
        return fail(c, KEY(NULL, "secrets"),
                    "cannot be used with isolation \"shared\": one child serves every tenant, so "
                    "no tenant's secrets_dir applies; use \"tenant\" isolation or \"env\"");
    if ((v = member(root, "sandbox")) != NULL &&
        parse_sandbox(c, v, KEY(NULL, "sandbox"), &m->sandbox) == -1)
        return -1;
    if ((v = member(root, "pin_mode")) != NULL) {
        if (get_enum(c, v, KEY(NULL, "pin_mode"), pin_modes, &e) == -1)
            return -1;
        m->pin_mode = (enum config_pin_mode)e;
    }
    if ((v = member(root, "unlisted_tools")) != NULL) {
        if (get_enum(c, v, KEY(NULL, "unlisted_tools"), unlisted, &e) == -1)
            return -1;
        m->unlisted_tools_allow = e == 1;
    }
    if ((v = member(root, "tools")) != NULL && parse_tools(c, v, m) == -1)
        return -1;
    return 0;
}

static int load_manifest(struct ctx *c, const char *fname, struct config_manifest *m)
{
    char *path = NULL, *stem = NULL;
    cJSON *root = NULL;
    size_t flen = strlen(fname);
    int rc = -1;

    /* list() is trusted to filter, but a name that climbs out of the folder is never read. */
    if (flen <= 5 || strcmp(fname + flen - 5, ".json") != 0 || fname[0] == '.' ||
        strchr(fname, '/') != NULL)
        return fail(c, KEY(NULL, "manifests_dir"), "unexpected file name \"%s\"", fname);
    path = path_absolute(c->cfg->manifests_dir, fname);
    stem = strndup(fname, flen - 5);
    if (path == NULL || stem == NULL || dup_str(c, display_name(c->cfg, path), &m->file) == -1) {
        oom(c);
        goto out;
    }
    c->file = m->file;
    if (load_json(c, path, &root) == -1 || parse_manifest(c, root, stem, m) == -1)
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    free(stem);
    free(path);
    return rc;
}

static int load_manifests(struct ctx *c)
{
    struct config *cfg = c->cfg;
    char **names = NULL;
    size_t n = 0;
    int rc = -1;

    if (c->src->list(c->src->ctx, cfg->manifests_dir, &names, &n) == -1) {
        if (errno == E2BIG)
            return fail(c, KEY(NULL, "manifests_dir"), "more than %d manifests",
                        CONFIG_MAX_MANIFESTS);
        return fail(c, KEY(NULL, "manifests_dir"), "cannot list %s: %s", cfg->manifests_dir,
                    strerror(errno));
    }
    if (n > CONFIG_MAX_MANIFESTS) {
        fail_msg(c, KEY(NULL, "manifests_dir"), "more than %d manifests", CONFIG_MAX_MANIFESTS);
        goto out;
    }
    if (n > 0) {
        cfg->manifests = calloc(n, sizeof *cfg->manifests);
        if (cfg->manifests == NULL) {
            oom(c);
            goto out;
        }
        cfg->nmanifests = n;
    }
    for (size_t i = 0; i < n; i++)
        if (load_manifest(c, names[i], &cfg->manifests[i]) == -1)
            goto out;
    rc = 0;
out:
    c->file = c->main_file;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Checks of mcpvisor.json that need the manifests. */
static int check_tenant_servers(struct ctx *c)
{
    const struct config *cfg = c->cfg;

    for (size_t i = 0; i < cfg->ntenants; i++) {
        const struct config_tenant *t = &cfg->tenants[i];
        const struct loc *sat = KEY(KEY(KEY(NULL, "tenants"), t->name), "servers");

        for (size_t j = 0; j < t->nservers; j++) {
            const struct config_manifest *m = config_manifest_find(cfg, t->servers[j]);

            if (m == NULL)
                return fail(c, IDX(sat, j), "unknown server \"%s\"", t->servers[j]);
            if (m->nsecrets > 0 && t->secrets_dir == NULL)
                return fail(c, IDX(sat, j),
                            "server \"%s\" needs secrets but the tenant has no secrets_dir",
                            t->servers[j]);
        }
    }
    return 0;
}

/* ---- API-key file ------------------------------------------------------------------------- */

struct key_ref {
    const uint8_t *sha256;
    size_t idx;
};

static int cmp_key_ref(const void *a, const void *b)
{
    const struct key_ref *x = a, *y = b;
    int r = memcmp(x->sha256, y->sha256, 32);

    return r != 0 ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Two records with one hash would make the principal depend on lookup order. */
static int check_key_duplicates(struct ctx *c)
{
    const struct config *cfg = c->cfg;
    struct key_ref *refs;
    size_t first = 0, dup = SIZE_MAX;

    if (cfg->napi_keys < 2)
        return 0;
    refs = malloc(cfg->napi_keys * sizeof *refs);
    if (refs == NULL)
        return oom(c);
    for (size_t i = 0; i < cfg->napi_keys; i++)
        refs[i] = (struct key_ref){cfg->api_keys[i].sha256, i};
    qsort(refs, cfg->napi_keys, sizeof *refs, cmp_key_ref);
    for (size_t i = 1; i < cfg->napi_keys; i++) {
        if (memcmp(refs[i - 1].sha256, refs[i].sha256, 32) == 0 && refs[i].idx < dup) {
            dup = refs[i].idx;
            first = refs[i - 1].idx;
        }
    }
    free(refs);
    if (dup == SIZE_MAX)
        return 0;
    return fail(c, KEY(IDX(KEY(NULL, "keys"), dup), "sha256"), "same key as /keys/%zu", first);
}

/* Reads a non-JSON file named by the configuration (PEM, JWKS) whole, through the source, so
 * the unprivileged front gets it in the bundle and `mcpvisor check` reports it unreadable. */
static int read_blob(struct ctx *c, const char *path, const struct loc *at, char **out)
{
    size_t len = 0;
    if (c->src->read(c->src->ctx, path, out, &len) == -1) {
        int e = errno;
        c->file = c->main_file;
        return fail(c, at, "cannot read %s: %s", display_name(c->cfg, path),
                    e == EFBIG ? "larger than the configuration file limit" : strerror(e));
    }
    if (memchr(*out, '\0', len) != NULL) {
        c->file = c->main_file;
        return fail(c, at, "%s: contains a NUL byte", display_name(c->cfg, path));
    }
    return 0;
}

static int load_blobs(struct ctx *c)
{
    struct config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct config_listener *l = &cfg->listeners[i];
        if (l->tls_cert == NULL)
            continue;
        const struct loc *tat = KEY(KEY(IDX(KEY(NULL, "listen"), i), "tls"), "cert");
        if (read_blob(c, l->tls_cert, tat, &l->tls_cert_pem) == -1)
            return -1;
        tat = KEY(KEY(IDX(KEY(NULL, "listen"), i), "tls"), "key");
        if (read_blob(c, l->tls_key, tat, &l->tls_key_pem) == -1)
            return -1;
    }
    if (cfg->jwt_jwks_file != NULL) {
        const struct loc *at = KEY(KEY(KEY(NULL, "auth"), "jwt"), "jwks_file");
        if (read_blob(c, cfg->jwt_jwks_file, at, &cfg->jwt_jwks_text) == -1)
            return -1;
        struct jose_keyset ks;
        char why[256];
        if (jose_jwks_parse(cfg->jwt_jwks_text, strlen(cfg->jwt_jwks_text), &ks, why,
                            sizeof(why)) == -1) {
            c->file = c->main_file;
            return fail(c, at, "%s: %s", display_name(cfg, cfg->jwt_jwks_file), why);
        }
        jose_keyset_free(&ks);
    }
    return 0;
}

static int load_api_keys(struct ctx *c)
{
    static const char *const keys[] = {"keys", NULL};
    static const char *const record_keys[] = {"sha256", "tenant", "user", "agent", "scopes", NULL};
    struct config *cfg = c->cfg;
    const struct loc *at = KEY(NULL, "keys");
    const cJSON *list, *it;
    cJSON *root = NULL;
    size_t n, i = 0;
    int rc = -1;

    if (cfg->api_keys_file == NULL)
        return 0;
    c->file = display_name(cfg, cfg->api_keys_file);
    if (load_json(c, cfg->api_keys_file, &root) == -1 || want_object(c, root, NULL, keys) == -1)
        goto out;
    if (required(c, root, NULL, "keys", &list) == -1 ||
        want_array(c, list, at, CONFIG_MAX_API_KEYS, &n) == -1)
        goto out;
    if (n > 0) {
        cfg->api_keys = calloc(n, sizeof *cfg->api_keys);
        if (cfg->api_keys == NULL) {
            oom(c);
            goto out;
        }
        cfg->napi_keys = n;
    }
    for (it = list->child; it != NULL; it = it->next) {
        const struct loc *kat = IDX(at, i);
        struct config_api_key *k = &cfg->api_keys[i];
        const cJSON *hash;
        const char *s;

        if (want_object(c, it, kat, record_keys) == -1 ||
            required(c, it, kat, "sha256", &hash) == -1 ||
            get_string(c, hash, KEY(kat, "sha256"), &s) == -1)
            goto out;
        if (!hex32(s, false, k->sha256)) {
            fail_msg(c, KEY(kat, "sha256"), "expected 64 hex digits");
            goto out;
        }
        if (parse_principal(c, it, kat, NULL, &k->principal) == -1)
            goto out;
        i++;
    }
    if (check_key_duplicates(c) == -1)
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    c->file = c->main_file;
    return rc;
}

/* ---- config_load -------------------------------------------------------------------------- */

struct config *config_load(const struct config_source *src, const char *path, char *err,
                           size_t errlen)
{
    struct ctx c = {.src = src, .main_file = path, .file = path, .err = err, .errlen = errlen};
    struct config *cfg = NULL;
    cJSON *root = NULL;
    char *slash;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (src == NULL || path == NULL || path[0] == '\0') {
        c.file = "(configuration)";
        fail_msg(&c, NULL, "no configuration file named");
        return NULL;
    }
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        oom(&c);
        return NULL;
    }
    c.cfg = cfg;
    if (path[0] == '/') {
        cfg->path = path_absolute(NULL, path);
    } else {
        char *cwd = getcwd(NULL, 0);

        if (cwd == NULL) {
            fail_msg(&c, NULL, "cannot resolve the path: %s", strerror(errno));
            goto fail;
        }
        cfg->path = path_absolute(cwd, path);
        free(cwd);
    }
    if (cfg->path == NULL) {
        oom(&c);
        goto fail;
    }
    slash = strrchr(cfg->path, '/');
    cfg->dir = slash == cfg->path ? strdup("/") : strndup(cfg->path, (size_t)(slash - cfg->path));
    if (cfg->dir == NULL) {
        oom(&c);
        goto fail;
    }
    /* Order: the whole of mcpvisor.json, then the manifests, then what needs both, then keys. */
    if (load_json(&c, cfg->path, &root) == -1 || parse_main(&c, root) == -1 ||
        load_manifests(&c) == -1 || check_tenant_servers(&c) == -1 || load_api_keys(&c) == -1 ||
        load_blobs(&c) == -1)
        goto fail;
    cJSON_Delete(root);
    return cfg;
fail:
    cJSON_Delete(root);
    config_free(cfg);
    return NULL;
}

struct config *config_load_file(const char *path, char *err, size_t errlen)
{
    return config_load(&config_source_fs, path, err, errlen);
}

static void free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_principal(struct config_principal *p)
{
    free(p->tenant);
    free(p->user);
    free(p->agent);
    free_strv(p->scopes, p->nscopes);
}

static void free_env(struct config_env *e, size_t n)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].value);
    }
    free(e);
}

static void free_manifest(struct config_manifest *m)
{
    free(m->file);
    free(m->name);
    free(m->version);
    free_strv(m->argv, m->argc);
    free_env(m->env, m->nenv);
    free_env(m->secrets, m->nsecrets);
    free_strv(m->sandbox.read_only, m->sandbox.nread_only);
    free_strv(m->sandbox.read_write, m->sandbox.nread_write);
    free_strv(m->sandbox.tmpfs, m->sandbox.ntmpfs);
    free_strv(m->sandbox.seccomp_deny, m->sandbox.nseccomp_deny);
    free_strv(m->sandbox.seccomp_allow, m->sandbox.nseccomp_allow);
    for (size_t i = 0; i < m->ntools; i++) {
        free(m->tools[i].name);
        free(m->tools[i].version);
        free(m->tools[i].sha256);
        free_strv(m->tools[i].scopes, m->tools[i].nscopes);
    }
    free(m->tools);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->dir);
    free(cfg->user);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].host);
        free(cfg->listeners[i].tls_cert);
        free(cfg->listeners[i].tls_key);
        free(cfg->listeners[i].tls_cert_pem);
        free(cfg->listeners[i].tls_key_pem);
    }
    free(cfg->public_url);
    free(cfg->tenant_ids_state);
    free_strv(cfg->allowed_origins, cfg->nallowed_origins);
    free_strv(cfg->allowed_hosts, cfg->nallowed_hosts);
    free(cfg->manifests_dir);
    free(cfg->api_keys_file);
    for (size_t i = 0; i < cfg->napi_keys; i++)
        free_principal(&cfg->api_keys[i].principal);
    free(cfg->api_keys);
    free_principal(&cfg->anonymous);
    free(cfg->jwt_issuer);
    free(cfg->jwt_audience);
    free(cfg->jwt_jwks_url);
    free(cfg->jwt_jwks_file);
    free(cfg->jwt_jwks_text);
    free_strv(cfg->jwt_authorization_servers, cfg->njwt_authorization_servers);
    free(cfg->jwt_claim_tenant);
    free(cfg->jwt_claim_agent);
    for (size_t i = 0; i < cfg->ntenants; i++) {
        free(cfg->tenants[i].name);
        free_strv(cfg->tenants[i].servers, cfg->tenants[i].nservers);
        free(cfg->tenants[i].secrets_dir);
    }
    free(cfg->tenants);
    free(cfg->audit_path);
    for (size_t i = 0; i < cfg->nmanifests; i++)
        free_manifest(&cfg->manifests[i]);
    free(cfg->manifests);
    free(cfg);
}

/* ---- lookups ------------------------------------------------------------------------------ */

const struct config_manifest *config_manifest_find(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nmanifests; i++)
        if (cfg->manifests[i].name != NULL && strcmp(cfg->manifests[i].name, name) == 0)
            return &cfg->manifests[i];
    return NULL;
}

const struct config_tenant *config_tenant_find(const struct config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (cfg->tenants[i].name != NULL && strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    return NULL;
}

bool config_tenant_allows(const struct config_tenant *t, const char *server)
{
    if (t == NULL || server == NULL)
        return false;
    for (size_t i = 0; i < t->nservers; i++)
        if (strcmp(t->servers[i], server) == 0)
            return true;
    return false;
}

const struct config_tool *config_tool_find(const struct config_manifest *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < m->ntools; i++)
        if (strcmp(m->tools[i].name, name) == 0)
            return &m->tools[i];
    return NULL;
}

/* ---- the filesystem source ---------------------------------------------------------------- */

/*
 * Regular files only (EINVAL otherwise, EISDIR for a folder), never more than
 * CONFIG_MAX_FILE_BYTES (EFBIG). O_NONBLOCK so that a FIFO planted under a .json name cannot
 * hang the loader in open().
 */
static int fs_read(void *ctx, const char *path, char **buf, size_t *len)
{
    struct stat st;
    char *data = NULL;
    size_t cap, used = 0;
    int fd, saved, rc = -1;

    (void)ctx;
    *buf = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1)
        return -1;
    if (fstat(fd, &st) == -1)
        goto out;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto out;
    }
    if (st.st_size > (off_t)CONFIG_MAX_FILE_BYTES) {
        errno = EFBIG;
        goto out;
    }
    /* One byte more than the file claims, to notice it growing under us. */
    cap = (size_t)st.st_size + 1;
    data = malloc(cap + 1);
    if (data == NULL)
        goto out;
    for (;;) {
        ssize_t n;

        if (used == cap) {
            size_t ncap = cap * 2 > (size_t)CONFIG_MAX_FILE_BYTES + 1
                              ? (size_t)CONFIG_MAX_FILE_BYTES + 1
                              : cap * 2;
            char *grown;

            if (cap == (size_t)CONFIG_MAX_FILE_BYTES + 1) {
                errno = EFBIG;
                goto out;
            }
            grown = realloc(data, ncap + 1);
            if (grown == NULL)
                goto out;
            data = grown;
            cap = ncap;
        }
        n = read(fd, data + used, cap - used);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (used > CONFIG_MAX_FILE_BYTES) {
        errno = EFBIG;
        goto out;
    }
    data[used] = '\0';
    *buf = data;
    *len = used;
    data = NULL;
    rc = 0;
out:
    saved = errno;
    free(data);
    close(fd);
    errno = saved;
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular "*.json" files (symlinks followed) not starting with '.';
 * E2BIG well before a hostile folder could exhaust memory. */
static int fs_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    DIR *d;
    struct dirent *de;
    char **v = NULL;
    size_t count = 0, cap = 0;
    int saved;

    (void)ctx;
    *names = NULL;
    *n = 0;
    d = opendir(dir);
    if (d == NULL)
        return -1;
    for (;;) {
        struct stat st;
        size_t len;

        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                goto fail;
            break;
        }
        len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        /* A dangling link stays listed, so reading it reports the real error. */
        if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && !S_ISREG(st.st_mode))
            continue;
        if (count == CONFIG_MAX_MANIFESTS + 1) {
            errno = E2BIG;
            goto fail;
        }
        if (count == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            char **grown = realloc(v, ncap * sizeof *v);

            if (grown == NULL)
                goto fail;
            v = grown;
            cap = ncap;
        }
        v[count] = strdup(de->d_name);
        if (v[count] == NULL)
            goto fail;
        count++;
    }
    closedir(d);
    if (count > 0)
        qsort(v, count, sizeof *v, cmp_names);
    *names = v;
    *n = count;
    return 0;
fail:
    saved = errno;
    free_strv(v, count);
    closedir(d);
    errno = saved;
    return -1;
}

const struct config_source config_source_fs = {fs_read, fs_list, NULL};

/* ---- bundles ------------------------------------------------------------------------------ */

/*
 * A bundle is one JSON object:
 *   {"format": "mcpvisor-config-bundle/1", "path": "/etc/mcpvisor/mcpvisor.json",
 *    "reads": [{"path": ..., "content": ...}], "lists": [{"dir": ..., "names": [...]}]}
 * Contents are JSON strings: the loader only accepts UTF-8 without NUL, so nothing is lost.
 */

struct recorder {
    const struct config_source *inner;
    cJSON *reads, *lists;
    bool failed; /* out of memory while recording: the bundle would be incomplete */
};

static int rec_read(void *ctx, const char *path, char **buf, size_t *len)
{
    struct recorder *r = ctx;
    cJSON *rec;

    if (r->inner->read(r->inner->ctx, path, buf, len) == -1)
        return -1;
    rec = cJSON_CreateObject();
    if (rec == NULL || cJSON_AddStringToObject(rec, "path", path) == NULL ||
        cJSON_AddStringToObject(rec, "content", *buf) == NULL ||
        !cJSON_AddItemToArray(r->reads, rec)) {
        cJSON_Delete(rec);
        r->failed = true;
        free(*buf);
        *buf = NULL;
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

static int rec_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    struct recorder *r = ctx;
    cJSON *rec, *arr;

    if (r->inner->list(r->inner->ctx, dir, names, n) == -1)
        return -1;
    rec = cJSON_CreateObject();
    if (rec == NULL || cJSON_AddStringToObject(rec, "dir", dir) == NULL ||
        (arr = cJSON_AddArrayToObject(rec, "names")) == NULL)
        goto fail;
    for (size_t i = 0; i < *n; i++) {
        cJSON *s = cJSON_CreateString((*names)[i]);

        if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            goto fail;
        }
    }
    if (!cJSON_AddItemToArray(r->lists, rec))
        goto fail;
    return 0;
fail:
    cJSON_Delete(rec);
    free_strv(*names, *n);
    *names = NULL;
    *n = 0;
    r->failed = true;
    errno = ENOMEM;
    return -1;
}

char *config_bundle_build(const struct config_source *src, const char *path, size_t *len, char *err,
                          size_t errlen)
{
    struct recorder r = {.inner = src};
    struct config_source rs = {rec_read, rec_list, &r};
    struct ctx c = {.file = "bundle", .err = err, .errlen = errlen};
    struct config *cfg = NULL;
    cJSON *root;
    char *text = NULL, *out = NULL;

    *len = 0;
    root = cJSON_CreateObject();
    if (root == NULL || cJSON_AddStringToObject(root, "format", BUNDLE_FORMAT) == NULL ||
        (r.reads = cJSON_AddArrayToObject(root, "reads")) == NULL ||
        (r.lists = cJSON_AddArrayToObject(root, "lists")) == NULL) {
        oom(&c);
        goto out;
    }
    cfg = config_load(&rs, path, err, errlen);
    if (cfg == NULL)
        goto out;
    if (r.failed || cJSON_AddStringToObject(root, "path", cfg->path) == NULL ||
        (text = cJSON_PrintUnformatted(root)) == NULL) {
        oom(&c);
        goto out;
    }
    /* A plain malloc'ed copy: the caller frees with free(), whatever hooks cJSON was given. */
    out = strdup(text);
    if (out == NULL) {
        oom(&c);
        goto out;
    }
    *len = strlen(out);
out:
    if (text != NULL)
        cJSON_free(text);
    cJSON_Delete(root);
    config_free(cfg);
    return out;
}

struct bundle_file {
    char *path;
    char *content;
    size_t len;
};

struct bundle_dir {
    char *dir;
    char **names;
    size_t n;
};

struct bundle {
    struct bundle_file *files;
    size_t nfiles;
    struct bundle_dir *dirs;
    size_t ndirs;
};

static void bundle_free(struct bundle *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nfiles; i++) {
        free(b->files[i].path);
        free(b->files[i].content);
    }
    free(b->files);
    for (size_t i = 0; i < b->ndirs; i++) {
        free(b->dirs[i].dir);
        free_strv(b->dirs[i].names, b->dirs[i].n);
    }
    free(b->dirs);
    free(b);
}

static int bundle_read(void *ctx, const char *path, char **buf, size_t *len)
{
    const struct bundle *b = ctx;

    for (size_t i = 0; i < b->nfiles; i++) {
        if (strcmp(b->files[i].path, path) == 0) {
            *buf = malloc(b->files[i].len + 1);
            if (*buf == NULL)
                return -1;
            memcpy(*buf, b->files[i].content, b->files[i].len + 1);
            *len = b->files[i].len;
            return 0;
        }
    }
    errno = ENOENT;
    return -1;
}

static int bundle_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    const struct bundle *b = ctx;

    for (size_t i = 0; i < b->ndirs; i++) {
        const struct bundle_dir *d = &b->dirs[i];
        char **v;

        if (strcmp(d->dir, dir) != 0)
            continue;
        v = calloc(d->n > 0 ? d->n : 1, sizeof *v);
        if (v == NULL)
            return -1;
        for (size_t j = 0; j < d->n; j++) {
            v[j] = strdup(d->names[j]);
            if (v[j] == NULL) {
                free_strv(v, j);
                errno = ENOMEM;
                return -1;
            }
        }
        *names = v;
        *n = d->n;
        return 0;
    }
    errno = ENOENT;
    return -1;
}

static int parse_bundle(struct ctx *c, const cJSON *root, struct bundle *b, char **path_out)
{
    static const char *const keys[] = {"format", "path", "reads", "lists", NULL};
    static const char *const read_keys[] = {"path", "content", NULL};
    static const char *const list_keys[] = {"dir", "names", NULL};
    const cJSON *m, *it;
    const char *s;
    size_t n, i = 0;

    if (want_object(c, root, NULL, keys) == -1 || required(c, root, NULL, "format", &m) == -1 ||
        get_string(c, m, KEY(NULL, "format"), &s) == -1)
        return -1;
    if (strcmp(s, BUNDLE_FORMAT) != 0)
        return fail(c, KEY(NULL, "format"), "expected \"%s\"", BUNDLE_FORMAT);
    if (required(c, root, NULL, "path", &m) == -1 ||
        dup_text(c, m, KEY(NULL, "path"), CONFIG_PATH_MAX, path_out) == -1)
        return -1;
    if (required(c, root, NULL, "reads", &m) == -1 ||
        want_array(c, m, KEY(NULL, "reads"), SIZE_MAX, &n) == -1)
        return -1;
    if (n > 0 && (b->files = calloc(n, sizeof *b->files)) == NULL)
        return oom(c);
    b->nfiles = n;
    for (it = m->child; it != NULL; it = it->next) {
        const struct loc *rat = IDX(KEY(NULL, "reads"), i);
        const cJSON *p, *content;

        if (want_object(c, it, rat, read_keys) == -1 || required(c, it, rat, "path", &p) == -1 ||
            required(c, it, rat, "content", &content) == -1 ||
            dup_text(c, p, KEY(rat, "path"), CONFIG_PATH_MAX, &b->files[i].path) == -1 ||
            get_string(c, content, KEY(rat, "content"), &s) == -1 ||
            dup_str(c, s, &b->files[i].content) == -1)
            return -1;
        b->files[i].len = strlen(s);
        i++;
    }
    if (required(c, root, NULL, "lists", &m) == -1 ||
        want_array(c, m, KEY(NULL, "lists"), SIZE_MAX, &n) == -1)
        return -1;
    if (n > 0 && (b->dirs = calloc(n, sizeof *b->dirs)) == NULL)
        return oom(c);
    b->ndirs = n;
    i = 0;
    for (it = m->child; it != NULL; it = it->next) {
        const struct loc *lat = IDX(KEY(NULL, "lists"), i);
        const cJSON *d, *names;

        if (want_object(c, it, lat, list_keys) == -1 || required(c, it, lat, "dir", &d) == -1 ||
            required(c, it, lat, "names", &names) == -1 ||
            dup_text(c, d, KEY(lat, "dir"), CONFIG_PATH_MAX, &b->dirs[i].dir) == -1 ||
            get_text_array(c, names, KEY(lat, "names"), NAME_MAX, NULL, NULL, &b->dirs[i].names,
                           &b->dirs[i].n) == -1)
            return -1;
        i++;
    }
    return 0;
}

int config_bundle_source(const char *bundle, size_t len, struct config_source *out, char **path_out,
                         char *err, size_t errlen)
{
    struct ctx c = {.file = "bundle", .err = err, .errlen = errlen};
    struct bundle *b = NULL;
    cJSON *root = NULL;
    char *path = NULL;
    int rc = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    *out = (struct config_source){0};
    if (path_out != NULL)
        *path_out = NULL;
    root = cJSON_ParseWithLength(bundle, len);
    if (root == NULL) {
        fail_msg(&c, NULL, "invalid JSON");
        goto out;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        oom(&c);
        goto out;
    }
    if (check_duplicates(&c, root) == -1 || parse_bundle(&c, root, b, &path) == -1)
        goto out;
    *out = (struct config_source){bundle_read, bundle_list, b};
    b = NULL;
    if (path_out != NULL) {
        *path_out = path;
        path = NULL;
    }
    rc = 0;
out:
    free(path);
    bundle_free(b);
    cJSON_Delete(root);
    return rc;
}

void config_bundle_source_free(struct config_source *src)
{
    if (src == NULL)
        return;
    bundle_free(src->ctx);
    *src = (struct config_source){0};
}
