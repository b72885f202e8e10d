/*
 * jsonschema.c — compiles JSON Schema documents (draft-07, 2020-12) into a graph of nodes and
 * validates instances against it.
 *
 * Compilation walks the schema document once: every subschema becomes one struct js_node, and a
 * table keyed by the subschema's cJSON address makes a $ref to an already compiled place share
 * its node. $ref targets are resolved from a work list after the walk, so a long chain of
 * references never deepens the C stack. A compiled schema owns copies of everything it needs
 * (names, enum and const values, compiled regexes) and never looks at the source again.
 *
 * Invariants: every keyword of a compiled schema is enforced or is an annotation listed in
 * jsonschema.h — anything else fails compilation, and unsupported keywords are collected so one
 * error names them all; the graph of subschemas applied to the same value is acyclic and at most
 * JSONSCHEMA_MAX_INPLACE deep. Validation never allocates, never writes to the schema, and stops
 * at JSONSCHEMA_MAX_DEPTH instance levels and JSONSCHEMA_MAX_STEPS units of work.
 */
#include "jsonschema.h"
#include "strbuf.h"
#include "util.h"

#include <math.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum js_draft {
    JS_DRAFT7 = 1,
    JS_DRAFT2020 = 2,
};

enum {
    JS_T_NULL = 1u << 0,
    JS_T_BOOLEAN = 1u << 1,
    JS_T_OBJECT = 1u << 2,
    JS_T_ARRAY = 1u << 3,
    JS_T_NUMBER = 1u << 4,
    JS_T_STRING = 1u << 5,
    JS_T_INTEGER = 1u << 6,
};

static const char *const type_names[] = {"null",   "boolean", "object", "array",
                                         "number", "string",  "integer"};
#define JS_NTYPES (sizeof type_names / sizeof type_names[0])

#define JS_PATH_BUF   1024 /* longest pointer kept while walking; errors keep 255 bytes */
#define JS_UNSUP_BUF  1024 /* room for the list of unsupported keywords */
#define JS_NOT_SCHEMA (-1) /* js_node.boolean of an object schema */

struct js_node;

struct js_pattern {
    char *source; /* the ECMA-262 text, for messages */
    pcre2_code *code;
    pcre2_match_data *md;
};

/* Matching is bounded: a pattern and a string from outside must not hold the event loop.
 * Backtracking steps, nesting depth and heap per match; beyond them the match is refused. */
#define RE_MATCH_LIMIT 1000000u
#define RE_DEPTH_LIMIT 10000u
#define RE_HEAP_KIB    8192u

struct js_prop {
    char *name;
    struct js_node *schema;
};

struct js_patprop {
    struct js_pattern *pattern;
    struct js_node *schema;
};

struct js_depreq {
    char *name;
    size_t n;
    char **required;
};

struct js_node {
    int boolean;    /* 0 or 1 for the schemas false and true, else JS_NOT_SCHEMA */
    size_t nassert; /* keywords that can reject something; 0 = accepts everything */
    size_t index;   /* in jsonschema.nodes */
    char *where;    /* JSON pointer in the schema document, for compile-time messages */
    struct js_node *ref;

    unsigned types; /* JS_T_* bits; 0 = no "type" */
    cJSON *enum_values;
    cJSON *const_value;

    bool has_minimum, has_maximum, has_xminimum, has_xmaximum, has_multiple;
    double minimum, maximum, xminimum, xmaximum, multiple;

    size_t min_length, max_length; /* 0 and SIZE_MAX when absent */
    struct js_pattern *pattern;

    size_t nprefix;
    struct js_node **prefix; /* prefixItems, or draft-07 items in its array form */
    const char *prefix_kw;
    bool items_array;
    struct js_node *items;            /* items in its schema form */
    struct js_node *additional_items; /* draft-07 */
    struct js_node *rest;             /* what applies to items after the prefix */
    const char *rest_kw;
    size_t min_items, max_items;
    bool unique;
    struct js_node *contains;
    size_t min_contains, max_contains;

    size_t nprops;
    struct js_prop *props;
    size_t npatprops;
    struct js_patprop *patprops;
    struct js_node *additional_props;
    size_t nrequired;
    char **required;
    size_t min_props, max_props;
    struct js_node *property_names;
    size_t ndepreq;
    struct js_depreq *depreq;
    const char *depreq_kw;
    size_t ndepsch;
    struct js_prop *depsch;
    const char *depsch_kw;

    size_t nall, nany, none;
    struct js_node **all, **any, **one;
    struct js_node *not_schema, *if_schema, *then_schema, *else_schema;
};

struct jsonschema {
    struct js_node *root;
    struct js_node **nodes; /* every node, owned here; the graph's edges are borrowed */
    size_t nnodes, capnodes;
    enum js_draft draft;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers: JSON pointers, bounded copies, UTF-8.
 */

struct js_path {
    char buf[JS_PATH_BUF];
    size_t len;
};

/* Appends "/" and `tok` escaped per RFC 6901; returns the previous length, for path_pop. A
 * pointer that outgrows the buffer is cut short (and shown ending in "..." in errors). */
static size_t path_push(struct js_path *p, const char *tok)
{
    size_t mark = p->len;
    if (p->len + 1 >= sizeof p->buf)
        return mark;
    p->buf[p->len++] = '/';
    for (const char *t = tok; *t != '\0'; t++) {
        const char *rep = *t == '~' ? "~0" : *t == '/' ? "~1" : NULL;
        size_t n = rep != NULL ? 2 : 1;
        if (p->len + n >= sizeof p->buf)
            break;
        if (rep != NULL)
            memcpy(p->buf + p->len, rep, 2);
        else
            p->buf[p->len] = *t;
        p->len += n;
    }
    p->buf[p->len] = '\0';
    return mark;
}

static size_t path_push_index(struct js_path *p, size_t i)
{
    char tok[24];
    snprintf(tok, sizeof tok, "%zu", i);
    return path_push(p, tok);
}

static void path_pop(struct js_path *p, size_t mark)
{
    p->len = mark;
    p->buf[mark] = '\0';
}

/* Drops a UTF-8 sequence cut short at the end of s (after a truncating copy). */
static void utf8_trim_tail(char *s)
{
    size_t len = strlen(s);
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0 || (unsigned char)s[i - 1] < 0x80)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (i - 1) < need)
        s[i - 1] = '\0';
}

/* Copies src into dst[dstlen], ending a copy that had to be cut short with "...". */
static void copy_bounded(char *dst, size_t dstlen, const char *src)
{
    size_t len = strlen(src);
    if (len < dstlen) {
        memcpy(dst, src, len + 1);
        return;
    }
    memcpy(dst, src, dstlen - 4);
    dst[dstlen - 4] = '\0';
    utf8_trim_tail(dst);
    size_t n = strlen(dst);
    memcpy(dst + n, "...", 4);
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* Decodes one UTF-8 sequence at s; returns its length, or 0 if it is malformed. */
static size_t utf8_decode(const char *s, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t n = u[0] >= 0xF0 && u[0] < 0xF5 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || (n == 3 && u[0] >= 0xF0))
        return 0;
    uint32_t v = u[0] & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    *cp = v;
    return n;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Number helpers without libm, which the daemon does not link. */
#define JS_TWO_POW_53 9007199254740992.0

static double js_fabs(double d)
{
    return d < 0 ? -d : d;
}

/* Every double of magnitude 2^53 or more is an integer. */
static bool is_integer(double d)
{
    if (!isfinite(d))
        return false;
    return js_fabs(d) >= JS_TWO_POW_53 || d == (double)(int64_t)d;
}

/* Distance from d to the nearest integer. */
static double js_frac_distance(double d)
{
    if (js_fabs(d) >= JS_TWO_POW_53)
        return 0;
    double r = (double)(int64_t)(d < 0 ? d - 0.5 : d + 0.5);
    return js_fabs(d - r);
}

/* ---------------------------------------------------------------------------------------------
 * ECMA-262 pattern → POSIX ERE. See jsonschema.h for what is translated and what is refused.
 */

static void sb_put_cp(struct strbuf *b, uint32_t cp)
{
    char enc[4];
    strbuf_put(b, enc, utf8_encode(cp, enc));
}

enum re_atom {
    RE_ERROR = -1,
    RE_CHAR,  /* one code point in *cp */
    RE_CLASS, /* \d \D \w \W \s \S: the letter in *cls */
};

static bool hex_digits(const char *s, size_t n, uint32_t *out)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = util_hex_digit((unsigned char)s[i]);
        if (d < 0)
            return false;
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return true;
}

/* Parses the escape at src[*ip] (a backslash). */
static enum re_atom re_escape(const char *src, size_t *ip, bool in_class, uint32_t *cp, char *cls,
                              const char **why)
{
    size_t i = *ip + 1;
    char e = src[i];
    *why = NULL;
    switch (e) {
    case '\0':
        *why = "a pattern cannot end with a backslash";
        return RE_ERROR;
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
        *cls = e;
        *ip = i + 1;
        return RE_CLASS;
    case 'n':
        *cp = '\n';
        break;
    case 't':
        *cp = '\t';
        break;
    case 'r':
        *cp = '\r';
        break;
    case 'f':
        *cp = '\f';
        break;
    case 'v':
        *cp = '\v';
        break;
    case 'b':
        if (!in_class) {
            *why = "word boundaries (\\b) are not supported";
            return RE_ERROR;
        }
        *cp = '\b';
        break;
    case 'B':
        *why = "word boundaries (\\B) are not supported";
        return RE_ERROR;
    case 'c':
        if (!((src[i + 1] >= 'a' && src[i + 1] <= 'z') ||
              (src[i + 1] >= 'A' && src[i + 1] <= 'Z'))) {
            *why = "\\c needs a letter";
            return RE_ERROR;
        }
        *cp = (uint32_t)(src[i + 1] % 32);
        i++;
        break;
    case 'p':
    case 'P':
        *why = "Unicode property escapes (\\p{...}) are not supported";
        return RE_ERROR;
    case 'k':
        *why = "named backreferences (\\k<...>) are not supported";
        return RE_ERROR;
    case 'x':
        if (!hex_digits(src + i + 1, 2, cp)) {
            *why = "\\x needs two hex digits";
            return RE_ERROR;
        }
        i += 2;
        break;
    case 'u':
        if (src[i + 1] == '{') {
            size_t j = i + 2, n = 0;
            while (src[j + n] != '}' && src[j + n] != '\0' && n < 7)
                n++;
            if (src[j + n] != '}' || n == 0 || !hex_digits(src + j, n, cp) || *cp > 0x10FFFF) {
                *why = "malformed \\u{...} escape";
                return RE_ERROR;
            }
            i = j + n;
            break;
        }
        if (!hex_digits(src + i + 1, 4, cp)) {
            *why = "\\u needs four hex digits";
            return RE_ERROR;
        }
        i += 4;
        if (*cp >= 0xD800 && *cp <= 0xDBFF) {
            uint32_t lo;
            if (src[i + 1] != '\\' || src[i + 2] != 'u' || !hex_digits(src + i + 3, 4, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF) {
                *why = "unpaired surrogate in a \\u escape";
                return RE_ERROR;
            }
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
            *why = "unpaired surrogate in a \\u escape";
            return RE_ERROR;
        }
        break;
    default:
        if (e >= '0' && e <= '9') {
            *why = e == '0' ? "NUL characters (\\0) are not supported"
                            : "backreferences (\\1...) are not supported";
            return RE_ERROR;
        }
        if ((unsigned char)e >= 0x80) {
            size_t n = utf8_decode(src + i, cp);
            if (n == 0) {
                *why = "the pattern is not valid UTF-8";
                return RE_ERROR;
            }
            i += n - 1;
            break;
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || e == '_') {
            *why = "unknown escape";
            return RE_ERROR;
        }
        *cp = (unsigned char)e; /* escaped punctuation: the character itself */
        break;
    }
    if (*cp == 0 && !in_class) {
        *why = "NUL characters are not supported";
        return RE_ERROR;
    }
    *ip = i + 1;
    return RE_CHAR;
}

/* A literal code point outside a class. */
static void re_put_literal(struct strbuf *b, uint32_t cp)
{
    if (cp < 0x80 && strchr(".[\\()*+?{|^$", (int)cp) != NULL)
        strbuf_putc(b, '\\');
    sb_put_cp(b, cp);
}

/* ECMA's WhiteSpace and LineTerminator code points, as the inside of a POSIX bracket. */
#define RE_MAX_LISTED 1024       /* non-ASCII code points of one class range, listed one by one */
#define RE_MAX_ERE    (1u << 16) /* bytes of a translated pattern */

#define RE_SPACE                                                                                   \
    "\t\n\v\f\r \xc2\xa0\xe1\x9a\x80\xe2\x80\x80\xe2\x80\x81\xe2\x80\x82\xe2\x80\x83\xe2\x80\x84"  \
    "\xe2\x80\x85\xe2\x80\x86\xe2\x80\x87\xe2\x80\x88\xe2\x80\x89\xe2\x80\x8a\xe2\x80\xa8\xe2\x80" \
    "\xa9\xe2\x80\xaf"                                                                             \
    "\xe2\x81\x9f\xe3\x80\x80\xef\xbb\xbf"

static const char *re_class_text(char cls)
{
    switch (cls) {
    case 'd':
        return "[0-9]";
    case 'D':
        return "[^0-9]";
    case 'w':
        return "[A-Za-z0-9_]";
    case 'W':
        return "[^A-Za-z0-9_]";
    case 's':
        return "[" RE_SPACE "]";
    default:
        return "[^" RE_SPACE "]";
    }
}

/* One member of a character class: a code point or a class escape. Raw characters are decoded
 * so that range ends can be compared and re-encoded. */
static enum re_atom re_class_atom(const char *src, size_t *ip, uint32_t *cp, char *cls,
                                  const char **why)
{
    if (src[*ip] == '\\')
        return re_escape(src, ip, true, cp, cls, why);
    size_t n = utf8_decode(src + *ip, cp);
    if (n == 0) {
        *why = "the pattern is not valid UTF-8";
        return RE_ERROR;
    }
    *ip += n;
    return RE_CHAR;
}

/*
 * glibc compiles no bracket range between multibyte characters ("Invalid collation character"),
 * so the ASCII part of a range stays a range and the rest is listed, up to RE_MAX_LISTED code
 * points.
 */
/* A code point inside a class: PCRE reads a backslash there as an escape. */
static void re_class_cp(struct strbuf *body, uint32_t cp)
{
    if (cp == '\\')
        strbuf_putc(body, '\\');
    sb_put_cp(body, cp);
}

static int re_put_range(struct strbuf *body, uint32_t lo, uint32_t hi, const char **why)
{
    if (lo < 0x80) {
        uint32_t top = hi < 0x80 ? hi : 0x7F;
        re_class_cp(body, lo);
        if (top > lo) {
            strbuf_putc(body, '-');
            re_class_cp(body, top);
        }
        if (hi < 0x80)
            return 0;
        lo = 0x80;
    }
    if (hi - lo >= RE_MAX_LISTED) {
        *why = "class ranges over more than 1024 non-ASCII code points are not supported";
        return -1;
    }
    for (uint32_t cp = lo; cp <= hi; cp++)
        if (cp < 0xD800 || cp > 0xDFFF)
            sb_put_cp(body, cp);
    return 0;
}

/*
 * Translates the class at src[*ip] ("[") into b. POSIX brackets take no escapes, so "]", "^" and
 * "-" become positional: "]" first, "^" anywhere but first, "-" last.
 */
static int re_class(const char *src, size_t *ip, struct strbuf *b, const char **why)
{
    size_t i = *ip + 1;
    bool neg = src[i] == '^';
    bool rb = false, caret = false, dash = false;
    struct strbuf body = {0};
    int rc = -1;
    if (neg)
        i++;
    if (src[i] == ']' && neg) {
        strbuf_putc(b, '.'); /* "[^]" is any code point; so is POSIX's "." without REG_NEWLINE */
        *ip = i + 1;
        rc = 0;
        goto out;
    }
    if (src[i] == ']') {
        *why = "empty classes ([]) are not supported";
        goto out;
    }
    while (src[i] != ']') {
        uint32_t lo, hi;
        char cls;
        if (src[i] == '\0') {
            *why = "unterminated character class";
            goto out;
        }
        if (src[i] == '[' && (src[i + 1] == ':' || src[i + 1] == '.' || src[i + 1] == '=')) {
            *why = "\"[:\", \"[.\" and \"[=\" inside a class are not supported";
            goto out;
        }
        bool raw_dash = src[i] == '-';
        enum re_atom a = re_class_atom(src, &i, &lo, &cls, why);
        if (a == RE_ERROR)
            goto out;
        if (a == RE_CLASS) {
            if (cls == 'D' || cls == 'W' || cls == 'S') {
                *why = "\\D, \\W and \\S inside a class are not supported";
                goto out;
            }
            strbuf_puts(&body, cls == 'd' ? "0-9" : cls == 'w' ? "A-Za-z0-9_" : RE_SPACE);
            if (src[i] == '-' && src[i + 1] != ']') {
                dash = true; /* "[\w-.]": after a class escape "-" is a literal */
                i++;
            }
            continue;
        }
        if (raw_dash && src[i] == '-' && src[i + 1] != ']') {
            *why = "ranges starting at \"-\" are not supported";
            goto out;
        }
        if (src[i] == '-' && src[i + 1] != ']' && src[i + 1] != '\0' && !raw_dash) {
            size_t j = i + 1;
            enum re_atom a2 = re_class_atom(src, &j, &hi, &cls, why);
            if (a2 == RE_ERROR)
                goto out;
            if (a2 == RE_CHAR) {
                if (lo == ']' || lo == '[' || lo == '^' || lo == '-' || hi == ']' || hi == '[' ||
                    hi == '-') {
                    *why = "ranges from or to \"[\", \"]\", \"^\" or \"-\" are not supported";
                    goto out;
                }
                if (hi < lo) {
                    *why = "a class range is out of order";
                    goto out;
                }
                if (hi == 0) {
                    i = j;
                    continue;
                }
                if (lo == 0)
                    lo = 1; /* cJSON strings hold no NUL: "[^\u0000-\u001f]" still works */
                if (re_put_range(&body, lo, hi, why) < 0)
                    goto out;
                i = j;
                continue;
            }
            dash = true; /* "[a-\d]": a literal "-" then the class, on the next turn */
            i++;
        }
        if (lo == 0)
            continue; /* no string can hold it */
        if (lo == ']')
            rb = true;
        else if (lo == '-')
            dash = true;
        else if (lo == '^' && body.len == 0)
            caret = true;
        else
            re_class_cp(&body, lo);
    }
    if (body.failed)
        goto out;
    *ip = i + 1;
    if (!rb && body.len == 0 && !caret && !dash) {
        *why = "a class of nothing but NUL is not supported";
        goto out;
    }
    if (!neg && !rb && body.len == 0 && caret && !dash) {
        strbuf_puts(b, "\\^");
        rc = 0;
        goto out;
    }
    strbuf_puts(b, neg ? "[^" : "[");
    if (rb)
        strbuf_putc(b, ']');
    if (body.len > 0)
        strbuf_put(b, body.p, body.len);
    if (caret) {
        if (rb || body.len > 0 || neg) {
            strbuf_putc(b, '^');
        } else {
            strbuf_puts(b, "-^"); /* "-" first, then "^" not first: both literal */
            dash = false;
        }
    }
    if (dash)
        strbuf_putc(b, '-');
    strbuf_putc(b, ']');
    rc = 0;
out:
    free(body.p);
    return rc;
}

/* The length of an ECMA quantifier {n}, {n,} or {n,m} at s, or 0 if s is a literal "{". */
static size_t re_quantifier_len(const char *s)
{
    size_t i = 1;
    if (s[i] < '0' || s[i] > '9')
        return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    if (s[i] == ',') {
        i++;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
    }
    return s[i] == '}' ? i + 1 : 0;
}

/* Returns a malloc'ed ERE; NULL with *why set when the pattern uses something unsupported, or
 * with *why NULL when out of memory. */
static char *re_translate(const char *src, const char **why)
{
    struct strbuf b = {0};
    size_t i = 0;
    bool quantified = false; /* the last thing emitted was a quantifier */
    *why = NULL;
    strbuf_puts(&b, "");
    while (src[i] != '\0' && !b.failed) {
        char ch = src[i];
        bool is_quantifier =
            ch == '*' || ch == '+' || ch == '?' || (ch == '{' && re_quantifier_len(src + i) > 0);
        if (is_quantifier && quantified) {
            /* "a++" or "a{2}*": a syntax error in ECMA-262 (PCRE would read some as possessive) */
            *why = "a quantifier follows a quantifier (not valid ECMA-262)";
            goto fail;
        }
        quantified = is_quantifier;
        switch (ch) {
        case '\\': {
            uint32_t cp;
            char cls;
            enum re_atom a = re_escape(src, &i, false, &cp, &cls, why);
            if (a == RE_ERROR)
                goto fail;
            if (a == RE_CLASS)
                strbuf_puts(&b, re_class_text(cls));
            else
                re_put_literal(&b, cp);
            break;
        }
        case '[':
            if (re_class(src, &i, &b, why) < 0)
                goto fail;
            break;
        case '.':
            /* ECMA's "." matches no line terminator; POSIX's matches "\n" too */
            strbuf_puts(&b, "[^\n\r\xe2\x80\xa8\xe2\x80\xa9]");
            i++;
            break;
        case '(':
            if (src[i + 1] == '?') {
                if (src[i + 2] == ':') {
                    i += 3;
                } else if (src[i + 2] == '<' && src[i + 3] != '=' && src[i + 3] != '!') {
                    const char *gt = strchr(src + i + 3, '>');
                    if (gt == NULL) {
                        *why = "unterminated group name";
                        goto fail;
                    }
                    i = (size_t)(gt - src) + 1;
                } else {
                    *why = src[i + 2] == '=' || src[i + 2] == '!' || src[i + 2] == '<'
                               ? "lookahead and lookbehind are not supported"
                               : "inline flags and other (?...) groups are not supported";
                    goto fail;
                }
            } else {
                i++;
            }
            strbuf_putc(&b, '(');
            break;
        case '*':
        case '+':
        case '?':
            strbuf_putc(&b, ch);
            i++;
            if (src[i] == '?')
                i++; /* lazy: the same answer when only asking whether a match exists */
            break;
        case '{': {
            size_t q = re_quantifier_len(src + i);
            if (q == 0) {
                strbuf_puts(&b, "\\{");
                i++;
                break;
            }
            strbuf_put(&b, src + i, q);
            i += q;
            if (src[i] == '?')
                i++;
            break;
        }
        default:
            strbuf_putc(&b, ch);
            i++;
        }
    }
    if (b.failed)
        goto fail;
    if (b.len > RE_MAX_ERE) {
        *why = "the pattern is too large once translated";
        goto fail;
    }
    return b.p;
fail:
    free(b.p);
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Compilation.
 */

struct memo_entry {
    const cJSON *json;
    struct js_node *node;
};

struct pending_ref {
    struct js_node *node;
    char *ref;
    char *where; /* pointer of the "$ref" keyword */
};

struct cctx {
    struct jsonschema *s;
    const cJSON *root;
    const char *root_id;
    const char *root_anchor;
    char *err;
    size_t errlen;
    bool failed;
    char failure[512]; /* the first malformed keyword */
    size_t nunsupported;
    char unsupported[JS_UNSUP_BUF];
    size_t unsupported_len;
    struct js_path path;
    unsigned nesting;
    struct memo_entry *memo;
    size_t memo_cap, memo_len;
    struct pending_ref *pending;
    size_t npending, cap_pending;
};

/* Fails compilation with "invalid schema at <pointer>: <message>"; the first failure wins. */
__attribute__((format(printf, 2, 3))) static int cfail(struct cctx *c, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->failure, sizeof c->failure, "invalid schema at %.200s: %s",
             c->path.len > 0 ? c->path.buf : "the root", msg);
    utf8_trim_tail(c->failure);
    return -1;
}

static int oom(struct cctx *c)
{
    return cfail(c, "out of memory");
}

/* Records an unsupported keyword at the current pointer; compilation goes on so that one error
 * names them all, and fails at the end. */
static int unsupported(struct cctx *c, const char *keyword, const char *why)
{
    char entry[512];
    snprintf(entry, sizeof entry, "%sunsupported keyword \"%.64s\" at %.256s%s%.128s",
             c->nunsupported > 0 ? "; " : "", keyword, c->path.buf, why != NULL ? ": " : "",
             why != NULL ? why : "");
    c->nunsupported++;
    size_t n = strlen(entry);
    if (c->unsupported_len + n < sizeof c->unsupported) {
        memcpy(c->unsupported + c->unsupported_len, entry, n + 1);
        c->unsupported_len += n;
    }
    return 0;
}

static size_t memo_slot(const struct cctx *c, const cJSON *json)
{
    uintptr_t h = (uintptr_t)json;
    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (c->memo_cap - 1);
}

static struct js_node *memo_get(const struct cctx *c, const cJSON *json)
{
    if (c->memo_cap == 0)
        return NULL;
    for (size_t i = memo_slot(c, json);; i = (i + 1) & (c->memo_cap - 1)) {
        if (c->memo[i].json == json)
            return c->memo[i].node;
        if (c->memo[i].json == NULL)
            return NULL;
    }
}

static int memo_put(struct cctx *c, const cJSON *json, struct js_node *node)
{
    if ((c->memo_len + 1) * 2 > c->memo_cap) {
        size_t cap = c->memo_cap != 0 ? c->memo_cap * 2 : 64;
        struct memo_entry *old = c->memo;
        size_t oldcap = c->memo_cap;
        c->memo = calloc(cap, sizeof *c->memo);
        if (c->memo == NULL) {
            c->memo = old;
            return -1;
        }
        c->memo_cap = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i].json == NULL)
                continue;
            size_t j = memo_slot(c, old[i].json);
            while (c->memo[j].json != NULL)
                j = (j + 1) & (cap - 1);
            c->memo[j] = old[i];
        }
        free(old);
    }
    size_t j = memo_slot(c, json);
    while (c->memo[j].json != NULL)
        j = (j + 1) & (c->memo_cap - 1);
    c->memo[j].json = json;
    c->memo[j].node = node;
    c->memo_len++;
    return 0;
}

static struct js_node *node_new(struct cctx *c)
{
    struct jsonschema *s = c->s;
    if (s->nnodes == s->capnodes) {
        size_t cap = s->capnodes != 0 ? s->capnodes * 2 : 16;
        struct js_node **nodes = realloc(s->nodes, cap * sizeof *nodes);
        if (nodes == NULL)
            return NULL;
        s->nodes = nodes;
        s->capnodes = cap;
    }
    struct js_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->where = strdup(c->path.buf);
    if (n->where == NULL) {
        free(n);
        return NULL;
    }
    n->boolean = JS_NOT_SCHEMA;
    n->max_length = n->max_items = n->max_props = n->max_contains = SIZE_MAX;
    n->min_contains = 1;
    n->index = s->nnodes;
    s->nodes[s->nnodes++] = n;
    return n;
}

static void pattern_free(struct js_pattern *p)
{
    if (p == NULL)
        return;
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
    free(p->source);
    free(p);
}

static void node_free(struct js_node *n)
{
    free(n->where);
    cJSON_Delete(n->enum_values);
    cJSON_Delete(n->const_value);
    pattern_free(n->pattern);
    free(n->prefix);
    for (size_t i = 0; i < n->nprops; i++)
        free(n->props[i].name);
    free(n->props);
    for (size_t i = 0; i < n->npatprops; i++)
        pattern_free(n->patprops[i].pattern);
    free(n->patprops);
    for (size_t i = 0; i < n->nrequired; i++)
        free(n->required[i]);
    free(n->required);
    for (size_t i = 0; i < n->ndepreq; i++) {
        free(n->depreq[i].name);
        for (size_t j = 0; j < n->depreq[i].n; j++)
            free(n->depreq[i].required[j]);
        free(n->depreq[i].required);
    }
    free(n->depreq);
    for (size_t i = 0; i < n->ndepsch; i++)
        free(n->depsch[i].name);
    free(n->depsch);
    free(n->all);
    free(n->any);
    free(n->one);
    free(n);
}

static struct js_node *compile_node(struct cctx *c, const cJSON *json);

/* Compiles a subschema found under `tok` of the current schema. */
static struct js_node *compile_sub(struct cctx *c, const char *tok, const cJSON *json)
{
    size_t mark = path_push(&c->path, tok);
    struct js_node *n = compile_node(c, json);
    path_pop(&c->path, mark);
    return n;
}

/* Compiles the array of subschemas `v` into *out[*n]. */
static int compile_list(struct cctx *c, const cJSON *v, struct js_node ***out, size_t *n,
                        bool nonempty)
{
    if (!cJSON_IsArray(v) || (nonempty && cJSON_GetArraySize(v) == 0))
        return cfail(c, nonempty ? "must be a non-empty array of schemas"
                                 : "must be an array of schemas");
    size_t count = (size_t)cJSON_GetArraySize(v);
    *out = calloc(count != 0 ? count : 1, sizeof **out);
    if (*out == NULL)
        return oom(c);
    size_t i = 0;
    for (const cJSON *e = v->child; e != NULL; e = e->next, i++) {
        size_t mark = path_push_index(&c->path, i);
        (*out)[i] = compile_node(c, e);
        path_pop(&c->path, mark);
        if ((*out)[i] == NULL)
            return -1;
        *n = i + 1;
    }
    return 0;
}

static int get_size(struct cctx *c, const cJSON *v, size_t *out)
{
    if (!cJSON_IsNumber(v) || !is_integer(v->valuedouble) || v->valuedouble < 0)
        return cfail(c, "must be a non-negative integer");
    double d = v->valuedouble;
    *out = d >= (double)SIZE_MAX ? SIZE_MAX : (size_t)d;
    return 0;
}

static int get_number(struct cctx *c, const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v))
        return cfail(c, "must be a number");
    *out = v->valuedouble;
    return 0;
}

/* Copies an array of strings. */
static int get_names(struct cctx *c, const cJSON *v, char ***out, size_t *n)
{
    if (!cJSON_IsArray(v))
        return cfail(c, "must be an array of strings");
    size_t count = (size_t)cJSON_GetArraySize(v);
    *out = calloc(count != 0 ? count : 1, sizeof **out);
    if (*out == NULL)
        return oom(c);
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e))
            return cfail(c, "must be an array of strings");
        (*out)[*n] = strdup(e->valuestring);
        if ((*out)[*n] == NULL)
            return oom(c);
        (*n)++;
    }
    return 0;
}

/* Compiles an ECMA pattern. Returns 0 with *out set, 1 if it is unsupported (recorded under
 * `keyword`), -1 on failure. */
static int pattern_compile(struct cctx *c, const char *keyword, const char *src,
                           struct js_pattern **out)
{
    *out = NULL;
    if (strlen(src) > JSONSCHEMA_MAX_PATTERN)
        return cfail(c, "pattern longer than %d bytes", JSONSCHEMA_MAX_PATTERN);
    const char *why;
    char *ere = re_translate(src, &why);
    if (ere == NULL) {
        if (why == NULL)
            return oom(c);
        char msg[256];
        snprintf(msg, sizeof msg, "pattern \"%.100s\": %s", src, why);
        unsupported(c, keyword, msg);
        return 1;
    }
    struct js_pattern *p = calloc(1, sizeof *p);
    if (p == NULL || (p->source = strdup(src)) == NULL) {
        free(p);
        free(ere);
        return oom(c);
    }
    /* The translation keeps POSIX ERE syntax, which PCRE2 reads the same way once "." may match
     * anything ("[^]"; ECMA's "." is translated to a class), "$" is only the end, and strings
     * that are not UTF-8 simply do not match. PCRE2 bounds its compiled size; a pattern over it
     * is one mcpvisor cannot validate. */
    int err;
    PCRE2_SIZE off;
    p->code = pcre2_compile((PCRE2_SPTR)ere, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOTALL |
                                PCRE2_DOLLAR_ENDONLY | PCRE2_NO_AUTO_CAPTURE,
                            &err, &off, NULL);
    free(ere);
    if (p->code == NULL) {
        char reason[128], msg[256];
        pcre2_get_error_message(err, (PCRE2_UCHAR *)reason, sizeof reason);
        snprintf(msg, sizeof msg, "pattern \"%.100s\": %s", src, reason);
        pattern_free(p);
        unsupported(c, keyword, msg);
        return 1;
    }
    p->md = pcre2_match_data_create(1, NULL);
    if (p->md == NULL) {
        pattern_free(p);
        return oom(c);
    }
    *out = p;
    return 0;
}

/* Keyword compilers: v is the keyword's value, c->path points at the keyword. */

static bool is_root(const struct cctx *c, const struct js_node *n)
{
    return n == c->s->root;
}

static int kw_annotation(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return 0;
}

static int kw_format(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return cJSON_IsString(v) ? 0 : cfail(c, "must be a string");
}

static int kw_content_schema(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return cJSON_IsObject(v) || cJSON_IsBool(v) ? 0 : cfail(c, "must be a schema");
}

static int draft_of(const char *uri, enum js_draft *draft)
{
    static const struct {
        const char *uri;
        enum js_draft draft;
    } known[] = {
        {"http://json-schema.org/draft-07/schema", JS_DRAFT7},
        {"https://json-schema.org/draft-07/schema", JS_DRAFT7},
        {"https://json-schema.org/draft/2020-12/schema", JS_DRAFT2020},
        {"http://json-schema.org/draft/2020-12/schema", JS_DRAFT2020},
    };
    size_t len = strlen(uri);
    if (len > 0 && uri[len - 1] == '#')
        len--;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].uri) == len && strncmp(known[i].uri, uri, len) == 0) {
            *draft = known[i].draft;
            return 0;
        }
    return -1;
}

static int kw_schema(struct cctx *c, struct js_node *n, const cJSON *v)
{
    enum js_draft d;
    if (!cJSON_IsString(v))
        return cfail(c, "must be a string");
    if (draft_of(v->valuestring, &d) < 0 || d != c->s->draft)
        return unsupported(c, "$schema", "a subschema of another draft");
    return 0;
}

static int kw_id(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsString(v))
        return cfail(c, "must be a string");
    if (!is_root(c, n))
        return unsupported(c, "$id", "only the root may have an $id");
    return 0;
}

static int kw_anchor(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsString(v))
        return cfail(c, "must be a string");
    if (!is_root(c, n))
        return unsupported(c, "$anchor", "only the root may have an $anchor");
    return 0;
}

static int kw_defs(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsObject(v))
        return cfail(c, "must be an object of schemas");
    for (const cJSON *e = v->child; e != NULL; e = e->next)
        if (compile_sub(c, e->string, e) == NULL)
            return -1;
    return 0;
}

static int kw_ref(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsString(v))
        return cfail(c, "must be a string");
    if (c->npending == c->cap_pending) {
        size_t cap = c->cap_pending != 0 ? c->cap_pending * 2 : 8;
        struct pending_ref *p = realloc(c->pending, cap * sizeof *p);
        if (p == NULL)
            return oom(c);
        c->pending = p;
        c->cap_pending = cap;
    }
    struct pending_ref *p = &c->pending[c->npending];
    p->node = n;
    p->ref = strdup(v->valuestring);
    p->where = strdup(c->path.buf);
    if (p->ref == NULL || p->where == NULL) {
        free(p->ref);
        free(p->where);
        return oom(c);
    }
    c->npending++;
    n->nassert++;
    return 0;
}

static int type_bit(struct cctx *c, const cJSON *v, unsigned *bits)
{
    if (!cJSON_IsString(v))
        return cfail(c, "must be a type name or an array of them");
    for (size_t i = 0; i < JS_NTYPES; i++)
        if (strcmp(v->valuestring, type_names[i]) == 0) {
            *bits |= 1u << i;
            return 0;
        }
    return cfail(c, "unknown type \"%.64s\"", v->valuestring);
}

static int kw_type(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0)
            return cfail(c, "must name at least one type");
        for (const cJSON *e = v->child; e != NULL; e = e->next)
            if (type_bit(c, e, &n->types) < 0)
                return -1;
    } else if (type_bit(c, v, &n->types) < 0) {
        return -1;
    }
    n->nassert++;
    return 0;
}

static int kw_enum(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsArray(v))
        return cfail(c, "must be an array");
    n->enum_values = cJSON_Duplicate(v, 1);
    if (n->enum_values == NULL)
        return oom(c);
    n->nassert++;
    return 0;
}

static int kw_const(struct cctx *c, struct js_node *n, const cJSON *v)
{
    n->const_value = cJSON_Duplicate(v, 1);
    if (n->const_value == NULL)
        return oom(c);
    n->nassert++;
    return 0;
}

static int kw_number(struct cctx *c, bool *has, double *value, const cJSON *v, struct js_node *n)
{
    if (get_number(c, v, value) < 0)
        return -1;
    *has = true;
    n->nassert++;
    return 0;
}

static int kw_minimum(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return kw_number(c, &n->has_minimum, &n->minimum, v, n);
}

static int kw_maximum(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return kw_number(c, &n->has_maximum, &n->maximum, v, n);
}

static int kw_xminimum(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (cJSON_IsBool(v))
        return unsupported(c, "exclusiveMinimum", "the boolean form is draft-04; use a number");
    return kw_number(c, &n->has_xminimum, &n->xminimum, v, n);
}

static int kw_xmaximum(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (cJSON_IsBool(v))
        return unsupported(c, "exclusiveMaximum", "the boolean form is draft-04; use a number");
    return kw_number(c, &n->has_xmaximum, &n->xmaximum, v, n);
}

static int kw_multiple(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
        return cfail(c, "must be a number greater than 0");
    n->multiple = v->valuedouble;
    n->has_multiple = true;
    n->nassert++;
    return 0;
}

#define KW_SIZE(fn, field)                                                                         \
    static int fn(struct cctx *c, struct js_node *n, const cJSON *v)                               \
    {                                                                                              \
        n->nassert++;                                                                              \
        return get_size(c, v, &n->field);                                                          \
    }
KW_SIZE(kw_min_length, min_length)
KW_SIZE(kw_max_length, max_length)
KW_SIZE(kw_min_items, min_items)
KW_SIZE(kw_max_items, max_items)
KW_SIZE(kw_min_props, min_props)
KW_SIZE(kw_max_props, max_props)
KW_SIZE(kw_min_contains, min_contains)
KW_SIZE(kw_max_contains, max_contains)

static int kw_pattern(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsString(v))
        return cfail(c, "must be a string");
    int rc = pattern_compile(c, "pattern", v->valuestring, &n->pattern);
    if (rc == 0)
        n->nassert++;
    return rc < 0 ? -1 : 0;
}

static int kw_items(struct cctx *c, struct js_node *n, const cJSON *v)
{
    n->nassert++;
    if (cJSON_IsArray(v)) {
        if (c->s->draft != JS_DRAFT7)
            return unsupported(c, "items", "the array form is draft-07; 2020-12 uses prefixItems");
        n->items_array = true;
        n->prefix_kw = "items";
        return compile_list(c, v, &n->prefix, &n->nprefix, false);
    }
    n->items = compile_node(c, v);
    return n->items != NULL ? 0 : -1;
}

static int kw_prefix_items(struct cctx *c, struct js_node *n, const cJSON *v)
{
    n->nassert++;
    n->prefix_kw = "prefixItems";
    return compile_list(c, v, &n->prefix, &n->nprefix, true);
}

#define KW_SCHEMA(fn, field)                                                                       \
    static int fn(struct cctx *c, struct js_node *n, const cJSON *v)                               \
    {                                                                                              \
        n->nassert++;                                                                              \
        n->field = compile_node(c, v);                                                             \
        return n->field != NULL ? 0 : -1;                                                          \
    }
KW_SCHEMA(kw_additional_items, additional_items)
KW_SCHEMA(kw_contains, contains)
KW_SCHEMA(kw_additional_props, additional_props)
KW_SCHEMA(kw_property_names, property_names)
KW_SCHEMA(kw_not, not_schema)
KW_SCHEMA(kw_if, if_schema)
KW_SCHEMA(kw_then, then_schema)
KW_SCHEMA(kw_else, else_schema)

#define KW_LIST(fn, list, count)                                                                   \
    static int fn(struct cctx *c, struct js_node *n, const cJSON *v)                               \
    {                                                                                              \
        n->nassert++;                                                                              \
        return compile_list(c, v, &n->list, &n->count, true);                                      \
    }
KW_LIST(kw_all_of, all, nall)
KW_LIST(kw_any_of, any, nany)
KW_LIST(kw_one_of, one, none)

static int kw_unique(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsBool(v))
        return cfail(c, "must be a boolean");
    n->unique = cJSON_IsTrue(v);
    n->nassert++;
    return 0;
}

static int kw_required(struct cctx *c, struct js_node *n, const cJSON *v)
{
    n->nassert++;
    return get_names(c, v, &n->required, &n->nrequired);
}

static int kw_properties(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsObject(v))
        return cfail(c, "must be an object of schemas");
    size_t count = (size_t)cJSON_GetArraySize(v);
    n->props = calloc(count != 0 ? count : 1, sizeof *n->props);
    if (n->props == NULL)
        return oom(c);
    n->nassert++;
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        struct js_prop *p = &n->props[n->nprops];
        if ((p->name = strdup(e->string)) == NULL)
            return oom(c);
        n->nprops++;
        if ((p->schema = compile_sub(c, e->string, e)) == NULL)
            return -1;
    }
    return 0;
}

static int kw_pattern_props(struct cctx *c, struct js_node *n, const cJSON *v)
{
    if (!cJSON_IsObject(v))
        return cfail(c, "must be an object of schemas");
    size_t count = (size_t)cJSON_GetArraySize(v);
    n->patprops = calloc(count != 0 ? count : 1, sizeof *n->patprops);
    if (n->patprops == NULL)
        return oom(c);
    n->nassert++;
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        struct js_pattern *p;
        size_t mark = path_push(&c->path, e->string);
        int rc = pattern_compile(c, "patternProperties", e->string, &p);
        path_pop(&c->path, mark);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;
        n->patprops[n->npatprops].pattern = p;
        n->npatprops++;
        if ((n->patprops[n->npatprops - 1].schema = compile_sub(c, e->string, e)) == NULL)
            return -1;
    }
    return 0;
}

/* dependentRequired, dependentSchemas and draft-07's dependencies, which holds either. */
static int compile_dependencies(struct cctx *c, struct js_node *n, const cJSON *v, bool names,
                                bool schemas, const char *kw)
{
    if (!cJSON_IsObject(v))
        return cfail(c, "must be an object");
    size_t count = (size_t)cJSON_GetArraySize(v);
    if (names && n->depreq == NULL) {
        if ((n->depreq = calloc(count != 0 ? count : 1, sizeof *n->depreq)) == NULL)
            return oom(c);
        n->depreq_kw = kw;
    }
    if (schemas && n->depsch == NULL) {
        if ((n->depsch = calloc(count != 0 ? count : 1, sizeof *n->depsch)) == NULL)
            return oom(c);
        n->depsch_kw = kw;
    }
    n->nassert++;
    for (const cJSON *e = v->child; e != NULL; e = e->next) {
        size_t mark = path_push(&c->path, e->string);
        int rc = 0;
        if (names && cJSON_IsArray(e)) {
            struct js_depreq *d = &n->depreq[n->ndepreq];
            if ((d->name = strdup(e->string)) == NULL)
                rc = oom(c);
            else
                n->ndepreq++, rc = get_names(c, e, &d->required, &d->n);
        } else if (schemas && (cJSON_IsObject(e) || cJSON_IsBool(e))) {
            struct js_prop *d = &n->depsch[n->ndepsch];
            if ((d->name = strdup(e->string)) == NULL) {
                rc = oom(c);
            } else {
                n->ndepsch++;
                d->schema = compile_node(c, e);
                rc = d->schema != NULL ? 0 : -1;
            }
        } else {
            rc = cfail(c, names && schemas ? "must be an array of names or a schema"
                          : names          ? "must be an array of names"
                                           : "must be a schema");
        }
        path_pop(&c->path, mark);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int kw_dependencies(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return compile_dependencies(c, n, v, true, true, "dependencies");
}

static int kw_dependent_required(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return compile_dependencies(c, n, v, true, false, "dependentRequired");
}

static int kw_dependent_schemas(struct cctx *c, struct js_node *n, const cJSON *v)
{
    return compile_dependencies(c, n, v, false, true, "dependentSchemas");
}

#define D7    ((unsigned)JS_DRAFT7)
#define D2020 ((unsigned)JS_DRAFT2020)
#define DALL  (D7 | D2020)

static const struct keyword {
    const char *name;
    unsigned drafts;
    int (*compile)(struct cctx *c, struct js_node *n, const cJSON *v);
} keywords[] = {
    {"$schema", DALL, kw_schema},
    {"$id", DALL, kw_id},
    {"$anchor", DALL, kw_anchor},
    {"$ref", DALL, kw_ref},
    {"$defs", DALL, kw_defs},
    {"definitions", DALL, kw_defs},
    {"$comment", DALL, kw_annotation},
    {"title", DALL, kw_annotation},
    {"description", DALL, kw_annotation},
    {"default", DALL, kw_annotation},
    {"examples", DALL, kw_annotation},
    {"deprecated", DALL, kw_annotation},
    {"readOnly", DALL, kw_annotation},
    {"writeOnly", DALL, kw_annotation},
    {"contentMediaType", DALL, kw_annotation},
    {"contentEncoding", DALL, kw_annotation},
    {"contentSchema", D2020, kw_content_schema},
    /* OpenAPI's hint on a oneOf, emitted by pydantic for tagged unions: the oneOf decides */
    {"discriminator", DALL, kw_annotation},
    {"format", DALL, kw_format},
    {"type", DALL, kw_type},
    {"enum", DALL, kw_enum},
    {"const", DALL, kw_const},
    {"multipleOf", DALL, kw_multiple},
    {"minimum", DALL, kw_minimum},
    {"maximum", DALL, kw_maximum},
    {"exclusiveMinimum", DALL, kw_xminimum},
    {"exclusiveMaximum", DALL, kw_xmaximum},
    {"minLength", DALL, kw_min_length},
    {"maxLength", DALL, kw_max_length},
    {"pattern", DALL, kw_pattern},
    {"items", DALL, kw_items},
    {"prefixItems", D2020, kw_prefix_items},
    {"additionalItems", D7, kw_additional_items},
    {"minItems", DALL, kw_min_items},
    {"maxItems", DALL, kw_max_items},
    {"uniqueItems", DALL, kw_unique},
    {"contains", DALL, kw_contains},
    {"minContains", D2020, kw_min_contains},
    {"maxContains", D2020, kw_max_contains},
    {"properties", DALL, kw_properties},
    {"patternProperties", DALL, kw_pattern_props},
    {"additionalProperties", DALL, kw_additional_props},
    {"required", DALL, kw_required},
    {"minProperties", DALL, kw_min_props},
    {"maxProperties", DALL, kw_max_props},
    {"propertyNames", DALL, kw_property_names},
    {"dependencies", D7, kw_dependencies},
    {"dependentRequired", D2020, kw_dependent_required},
    {"dependentSchemas", D2020, kw_dependent_schemas},
    {"allOf", DALL, kw_all_of},
    {"anyOf", DALL, kw_any_of},
    {"oneOf", DALL, kw_one_of},
    {"not", DALL, kw_not},
    {"if", DALL, kw_if},
    {"then", DALL, kw_then},
    {"else", DALL, kw_else},
};

_Static_assert(sizeof keywords / sizeof keywords[0] <= 64, "compile_object keeps a 64-bit set");

static const struct keyword *keyword_find(const char *name)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(keywords[i].name, name) == 0)
            return &keywords[i];
    return NULL;
}

static int compile_object(struct cctx *c, struct js_node *n, const cJSON *json)
{
    /* draft-07 §8.3: "All other properties in a "$ref" object MUST be ignored." Subschema
     * containers are still compiled, since references may point into them. */
    bool ref_only =
        c->s->draft == JS_DRAFT7 && cJSON_GetObjectItemCaseSensitive(json, "$ref") != NULL;
    uint64_t seen = 0; /* cJSON keeps duplicate keys; a keyword given twice is ambiguous */
    for (const cJSON *kw = json->child; kw != NULL; kw = kw->next) {
        const char *name = kw->string;
        if (ref_only && strcmp(name, "$ref") != 0 && strcmp(name, "definitions") != 0 &&
            strcmp(name, "$defs") != 0)
            continue;
        const struct keyword *k = keyword_find(name);
        size_t mark = path_push(&c->path, name);
        uint64_t bit = k != NULL ? UINT64_C(1) << (k - keywords) : 0;
        int rc;
        if (k == NULL) {
            rc = unsupported(c, name, NULL);
        } else if ((k->drafts & (unsigned)c->s->draft) == 0) {
            rc = unsupported(c, name,
                             c->s->draft == JS_DRAFT7 ? "not a draft-07 keyword"
                                                      : "not a 2020-12 keyword");
        } else if (seen & bit) {
            rc = cfail(c, "the keyword appears twice");
        } else {
            seen |= bit;
            rc = k->compile(c, n, kw);
        }
        path_pop(&c->path, mark);
        if (rc < 0)
            return -1;
    }
    if (n->items_array) {
        n->rest = n->additional_items;
        n->rest_kw = "additionalItems";
    } else {
        n->rest = n->items;
        n->rest_kw = "items";
    }
    return 0;
}

static struct js_node *compile_node(struct cctx *c, const cJSON *json)
{
    struct js_node *n = memo_get(c, json);
    if (n != NULL)
        return n;
    if (c->s->nnodes >= JSONSCHEMA_MAX_NODES) {
        cfail(c, "more than %d subschemas", JSONSCHEMA_MAX_NODES);
        return NULL;
    }
    if (c->nesting >= JSONSCHEMA_MAX_NESTING) {
        cfail(c, "subschemas nested more than %d deep", JSONSCHEMA_MAX_NESTING);
        return NULL;
    }
    if (!cJSON_IsObject(json) && !cJSON_IsBool(json)) {
        cfail(c, "a schema must be an object or a boolean");
        return NULL;
    }
    n = node_new(c);
    if (n == NULL || memo_put(c, json, n) < 0) {
        oom(c);
        return NULL;
    }
    if (c->s->root == NULL)
        c->s->root = n;
    if (cJSON_IsBool(json)) {
        n->boolean = cJSON_IsTrue(json) ? 1 : 0;
        n->nassert = n->boolean ? 0 : 1;
        return n;
    }
    c->nesting++;
    int rc = compile_object(c, n, json);
    c->nesting--;
    return rc == 0 ? n : NULL;
}

/* Walks the JSON pointer `frag` ("" or "/a/b", already percent-decoded) from the root. */
static const cJSON *pointer_walk(const cJSON *root, const char *frag)
{
    const cJSON *at = root;
    const char *p = frag;
    char tok[JS_PATH_BUF];
    while (*p == '/') {
        p++;
        size_t n = 0;
        while (*p != '/' && *p != '\0') {
            char ch = *p++;
            if (ch == '~') {
                if (*p != '0' && *p != '1')
                    return NULL;
                ch = *p++ == '0' ? '~' : '/';
            }
            if (n + 1 >= sizeof tok)
                return NULL;
            tok[n++] = ch;
        }
        tok[n] = '\0';
        if (cJSON_IsObject(at)) {
            at = cJSON_GetObjectItemCaseSensitive(at, tok);
        } else if (cJSON_IsArray(at)) {
            char *end;
            if (n == 0 || tok[0] < '0' || tok[0] > '9' || (tok[0] == '0' && n > 1))
                return NULL;
            unsigned long i = strtoul(tok, &end, 10);
            if (*end != '\0' || i > INT32_MAX)
                return NULL;
            at = cJSON_GetArrayItem(at, (int)i);
        } else {
            return NULL;
        }
        if (at == NULL)
            return NULL;
    }
    return *p == '\0' ? at : NULL;
}

/* Percent-decodes a URI fragment into out[outlen]. */
static int percent_decode(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = in; *p != '\0'; p++) {
        char ch = *p;
        if (ch == '%') {
            uint32_t v;
            if (!hex_digits(p + 1, 2, &v) || v == 0)
                return -1;
            ch = (char)v;
            p += 2;
        }
        if (n + 1 >= outlen)
            return -1;
        out[n++] = ch;
    }
    out[n] = '\0';
    return 0;
}

/* Resolves one $ref; 0 when resolved (or recorded as unsupported), -1 on failure. */
static int resolve_ref(struct cctx *c, struct js_node *n, const char *ref)
{
    const char *frag = ref;
    size_t idlen = c->root_id != NULL ? strcspn(c->root_id, "#") : 0;
    if (idlen > 0 && strncmp(ref, c->root_id, idlen) == 0 &&
        (ref[idlen] == '#' || ref[idlen] == '\0'))
        frag = ref + idlen;
    if (frag[0] == '\0') {
        n->ref = c->s->root;
        return 0;
    }
    if (frag[0] != '#')
        return unsupported(c, "$ref", "only references within the schema (\"#...\") are supported");
    char decoded[JS_PATH_BUF];
    if (percent_decode(frag + 1, decoded, sizeof decoded) < 0)
        return cfail(c, "malformed reference \"%.100s\"", ref);
    if (decoded[0] != '/' && decoded[0] != '\0') {
        if (c->root_anchor != NULL && strcmp(decoded, c->root_anchor) == 0) {
            n->ref = c->s->root;
            return 0;
        }
        return unsupported(c, "$ref", "anchors other than the root's are not supported");
    }
    const cJSON *target = pointer_walk(c->root, decoded);
    if (target == NULL)
        return cfail(c, "reference \"%.100s\" points at nothing", ref);
    struct js_path saved = c->path;
    c->path.len = 0;
    c->path.buf[0] = '\0';
    copy_bounded(c->path.buf, sizeof c->path.buf, decoded);
    c->path.len = strlen(c->path.buf);
    unsigned nesting = c->nesting;
    c->nesting = 0;
    n->ref = compile_node(c, target);
    c->nesting = nesting;
    c->path = saved;
    return n->ref != NULL ? 0 : -1;
}

/* The i-th subschema that `n` applies to the same value as itself, or NULL past the last. */
static struct js_node *inplace_child(const struct js_node *n, size_t i)
{
    if (n->ref != NULL && i-- == 0)
        return n->ref;
    if (i < n->nall)
        return n->all[i];
    i -= n->nall;
    if (i < n->nany)
        return n->any[i];
    i -= n->nany;
    if (i < n->none)
        return n->one[i];
    i -= n->none;
    if (i < n->ndepsch)
        return n->depsch[i].schema;
    i -= n->ndepsch;
    struct js_node *rest[] = {n->not_schema, n->if_schema, n->if_schema ? n->then_schema : NULL,
                              n->if_schema ? n->else_schema : NULL};
    for (size_t k = 0; k < sizeof rest / sizeof rest[0]; k++)
        if (rest[k] != NULL && i-- == 0)
            return rest[k];
    return NULL;
}

/*
 * Refuses cycles among subschemas applied to the same value ({"$ref": "#"}, or two $defs that
 * refer to each other): validating them would never end. Also bounds how long such a chain may
 * be, which bounds the validator's recursion per instance level. Iterative, so that a long chain
 * cannot exhaust the C stack here either.
 */
static int check_inplace(struct cctx *c)
{
    struct jsonschema *s = c->s;
    struct frame {
        struct js_node *node;
        size_t next;
    } *stack = calloc(s->nnodes, sizeof *stack);
    unsigned char *state = calloc(s->nnodes, 1); /* 0 new, 1 on the stack, 2 done */
    size_t *height = calloc(s->nnodes, sizeof *height);
    int rc = -1;
    if (stack == NULL || state == NULL || height == NULL) {
        oom(c);
        goto out;
    }
    for (size_t r = 0; r < s->nnodes; r++) {
        if (state[r] != 0)
            continue;
        size_t sp = 0;
        stack[sp++] = (struct frame){s->nodes[r], 0};
        state[r] = 1;
        while (sp > 0) {
            struct frame *top = &stack[sp - 1];
            struct js_node *child = inplace_child(top->node, top->next++);
            if (child != NULL) {
                if (state[child->index] == 1) {
                    copy_bounded(c->path.buf, sizeof c->path.buf, child->where);
                    c->path.len = strlen(c->path.buf);
                    cfail(c, "this subschema applies itself to the same value (a $ref cycle)");
                    goto out;
                }
                if (state[child->index] == 0) {
                    state[child->index] = 1;
                    stack[sp++] = (struct frame){child, 0};
                }
                continue;
            }
            size_t h = 0;
            for (size_t k = 0; (child = inplace_child(top->node, k)) != NULL; k++)
                if (height[child->index] > h)
                    h = height[child->index];
            height[top->node->index] = h + 1;
            state[top->node->index] = 2;
            if (h + 1 > JSONSCHEMA_MAX_INPLACE) {
                copy_bounded(c->path.buf, sizeof c->path.buf, top->node->where);
                c->path.len = strlen(c->path.buf);
                cfail(c, "more than %d subschemas apply in a chain to the same value",
                      JSONSCHEMA_MAX_INPLACE);
                goto out;
            }
            sp--;
        }
    }
    rc = 0;
out:
    free(stack);
    free(state);
    free(height);
    return rc;
}

struct jsonschema *jsonschema_compile(const cJSON *schema, char *err, size_t errlen)
{
    struct cctx c = {.root = schema, .err = err, .errlen = errlen};
    if (errlen > 0)
        err[0] = '\0';
    c.s = calloc(1, sizeof *c.s);
    if (c.s == NULL) {
        if (errlen > 0)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c.s->draft = JS_DRAFT2020;
    if (cJSON_IsObject(schema)) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(schema, "$schema");
        if (v != NULL) {
            enum js_draft d;
            size_t mark = path_push(&c.path, "$schema");
            if (!cJSON_IsString(v))
                cfail(&c, "must be a string");
            else if (draft_of(v->valuestring, &d) < 0)
                cfail(&c, "unsupported draft \"%.100s\" (supported: draft-07 and 2020-12)",
                      v->valuestring);
            else
                c.s->draft = d;
            path_pop(&c.path, mark);
        }
        v = cJSON_GetObjectItemCaseSensitive(schema, "$id");
        c.root_id = cJSON_IsString(v) ? v->valuestring : NULL;
        v = cJSON_GetObjectItemCaseSensitive(schema, "$anchor");
        c.root_anchor = cJSON_IsString(v) ? v->valuestring : NULL;
    }
    if (!c.failed && compile_node(&c, schema) != NULL) {
        /* c.pending may grow while we go: a target's own references join the list. */
        for (size_t i = 0; i < c.npending && !c.failed; i++) {
            struct js_path saved = c.path;
            copy_bounded(c.path.buf, sizeof c.path.buf, c.pending[i].where);
            c.path.len = strlen(c.path.buf);
            resolve_ref(&c, c.pending[i].node, c.pending[i].ref);
            c.path = saved;
        }
        if (!c.failed && c.nunsupported == 0)
            check_inplace(&c);
    }
    for (size_t i = 0; i < c.npending; i++) {
        free(c.pending[i].ref);
        free(c.pending[i].where);
    }
    free(c.pending);
    free(c.memo);
    /* Unsupported keywords come first: a malformed reference found after them (one relative
     * to a nested $id, say) is usually their consequence. */
    if (errlen > 0 && c.nunsupported > 0) {
        char count[48] = "";
        if (c.nunsupported > 1)
            snprintf(count, sizeof count, "%zu unsupported keywords: ", c.nunsupported);
        snprintf(err, errlen, "%s%s%s%s", count, c.unsupported, c.failed ? "; and " : "",
                 c.failed ? c.failure : "");
        utf8_trim_tail(err);
    } else if (errlen > 0 && c.failed) {
        snprintf(err, errlen, "%s", c.failure);
        utf8_trim_tail(err);
    }
    if (c.failed || c.nunsupported > 0) {
        jsonschema_free(c.s);
        return NULL;
    }
    return c.s;
}

size_t jsonschema_nodes(const struct jsonschema *s)
{
    return s != NULL ? s->nnodes : 0;
}

void jsonschema_free(struct jsonschema *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nnodes; i++)
        node_free(s->nodes[i]);
    free(s->nodes);
    free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Validation.
 */

struct vctx {
    struct jsonschema_error *errs;
    size_t max;
    size_t count;   /* errors reported (not counting those under quiet) */
    unsigned quiet; /* > 0 inside anyOf, oneOf, not, if, contains, propertyNames */
    bool aborted;   /* over the work budget: every check fails from here on */
    size_t steps;
    unsigned depth;
    struct js_path path;
};

static void record(struct vctx *c, const char *keyword, const char *msg)
{
    if (c->count < c->max) {
        struct jsonschema_error *e = &c->errs[c->count];
        copy_bounded(e->instance, sizeof e->instance, c->path.buf);
        copy_bounded(e->keyword, sizeof e->keyword, keyword);
        copy_bounded(e->message, sizeof e->message, msg);
    }
    c->count++;
}

/* Reports an error at the current instance pointer; returns 1, the number of errors it adds. */
__attribute__((format(printf, 3, 4))) static size_t emit(struct vctx *c, const char *keyword,
                                                         const char *fmt, ...)
{
    if (c->quiet > 0 || c->aborted)
        return 1;
    char msg[sizeof((struct jsonschema_error *)0)->message + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    record(c, keyword, msg);
    return 1;
}

/* Counts a unit of work; false once the budget is spent. */
static bool step(struct vctx *c)
{
    if (c->aborted)
        return false;
    if (++c->steps <= JSONSCHEMA_MAX_STEPS)
        return true;
    c->aborted = true;
    record(c, "budget", "validation stopped: the value needs more work than allowed");
    return false;
}

static bool stop(const struct vctx *c, size_t e)
{
    return c->aborted || (c->quiet > 0 && e > 0);
}

static bool json_equal(struct vctx *c, const cJSON *a, const cJSON *b)
{
    if (!step(c))
        return false;
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble;
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return false;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x != NULL && y != NULL; x = x->next, y = y->next)
            if (!json_equal(c, x, y))
                return false;
        return x == NULL && y == NULL;
    }
    if (cJSON_IsObject(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return false;
        for (const cJSON *x = a->child; x != NULL; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (y == NULL || !json_equal(c, x, y))
                return false;
        }
        return true;
    }
    return true; /* null, true, false */
}

static unsigned type_of(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return JS_T_NULL;
    if (cJSON_IsBool(v))
        return JS_T_BOOLEAN;
    if (cJSON_IsObject(v))
        return JS_T_OBJECT;
    if (cJSON_IsArray(v))
        return JS_T_ARRAY;
    if (cJSON_IsString(v))
        return JS_T_STRING;
    if (cJSON_IsNumber(v))
        return is_integer(v->valuedouble) ? JS_T_INTEGER | JS_T_NUMBER : JS_T_NUMBER;
    return 0;
}

static const char *type_name_of(const cJSON *v)
{
    unsigned t = type_of(v);
    if (t & JS_T_INTEGER)
        return "integer";
    for (size_t i = 0; i < JS_NTYPES; i++)
        if (t == 1u << i)
            return type_names[i];
    return "unknown";
}

static size_t eval(struct vctx *c, const struct js_node *n, const cJSON *inst, const char *via);

/* Applies `n` to a member or item of the current value, one level down. */
static size_t eval_child(struct vctx *c, const struct js_node *n, const cJSON *inst,
                         const char *tok, size_t index, const char *via)
{
    if (n->nassert == 0)
        return 0;
    size_t mark = tok != NULL ? path_push(&c->path, tok) : path_push_index(&c->path, index);
    size_t e;
    if (c->depth >= JSONSCHEMA_MAX_DEPTH) {
        e = emit(c, "depth", "value nested more than %d levels deep", JSONSCHEMA_MAX_DEPTH);
    } else {
        c->depth++;
        e = eval(c, n, inst, via);
        c->depth--;
    }
    path_pop(&c->path, mark);
    return e;
}

/* 0 if `inst` is valid against n, 1 if not; reports nothing. */
static size_t quiet_eval(struct vctx *c, const struct js_node *n, const cJSON *inst)
{
    c->quiet++;
    size_t e = eval(c, n, inst, "");
    c->quiet--;
    return e > 0;
}

static size_t quiet_eval_child(struct vctx *c, const struct js_node *n, const cJSON *inst,
                               const char *tok, size_t index)
{
    c->quiet++;
    size_t e = eval_child(c, n, inst, tok, index, "");
    c->quiet--;
    return e > 0;
}

static void type_list(unsigned types, char *out, size_t outlen)
{
    size_t len = 0, k = 0, total = 0;
    for (size_t i = 0; i < JS_NTYPES; i++)
        total += (types >> i) & 1u;
    out[0] = '\0';
    for (size_t i = 0; i < JS_NTYPES; i++) {
        if (!(types & (1u << i)))
            continue;
        const char *sep = k == 0 ? "" : k + 1 == total ? " or " : ", ";
        int w = snprintf(out + len, outlen - len, "%s%s", sep, type_names[i]);
        if (w < 0 || (size_t)w >= outlen - len)
            return;
        len += (size_t)w;
        k++;
    }
}

static size_t eval_generic(struct vctx *c, const struct js_node *n, const cJSON *inst)
{
    size_t e = 0;
    if (n->types != 0 && (type_of(inst) & n->types) == 0) {
        char want[80];
        type_list(n->types, want, sizeof want);
        e += emit(c, "type", "expected %s, got %s", want, type_name_of(inst));
        if (stop(c, e))
            return e;
    }
    if (n->enum_values != NULL) {
        bool found = false;
        for (const cJSON *v = n->enum_values->child; v != NULL && !found; v = v->next)
            found = json_equal(c, v, inst);
        if (!found)
            e += emit(c, "enum", "value is not one of the %d allowed values",
                      cJSON_GetArraySize(n->enum_values));
        if (stop(c, e))
            return e;
    }
    if (n->const_value != NULL && !json_equal(c, n->const_value, inst))
        e += emit(c, "const", "value is not the one allowed (const)");
    return e;
}

/* The shortest of %.15g and %.17g that reads back as d: 0.1, not 0.10000000000000001. */
static const char *fmt_number(double d, char buf[32])
{
    snprintf(buf, 32, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, 32, "%.17g", d);
    return buf;
}

static size_t eval_number(struct vctx *c, const struct js_node *n, double d)
{
    char a[32], b[32];
    size_t e = 0;
    if (n->has_minimum && !(d >= n->minimum))
        e += emit(c, "minimum", "%s is less than the minimum %s", fmt_number(d, a),
                  fmt_number(n->minimum, b));
    if (n->has_maximum && !(d <= n->maximum) && !stop(c, e))
        e += emit(c, "maximum", "%s is greater than the maximum %s", fmt_number(d, a),
                  fmt_number(n->maximum, b));
    if (n->has_xminimum && !(d > n->xminimum) && !stop(c, e))
        e += emit(c, "exclusiveMinimum", "%s is not greater than %s", fmt_number(d, a),
                  fmt_number(n->xminimum, b));
    if (n->has_xmaximum && !(d < n->xmaximum) && !stop(c, e))
        e += emit(c, "exclusiveMaximum", "%s is not less than %s", fmt_number(d, a),
                  fmt_number(n->xmaximum, b));
    if (n->has_multiple && !stop(c, e)) {
        /* The quotient of binary fractions is rarely exact (0.3 / 0.1 = 2.9999999999999996):
         * accept it within a relative 1e-9 of an integer. When it overflows, d is a huge
         * integer, a multiple of m exactly when 1/m is an integer (m = 0.5, say). */
        double q = d / n->multiple;
        double tolerance = 1e-9 * (js_fabs(q) > 1 ? js_fabs(q) : 1);
        bool ok = isfinite(q) ? js_frac_distance(q) <= tolerance
                              : is_integer(d) && is_integer(1 / n->multiple);
        if (!ok)
            e += emit(c, "multipleOf", "%s is not a multiple of %s", fmt_number(d, a),
                      fmt_number(n->multiple, b));
    }
    return e;
}

/* 1: s matches; 0: it does not; -1: the match ran into a limit (or out of memory). */
static int pattern_match(const struct js_pattern *p, const char *s)
{
    static pcre2_match_context *mctx;
    if (mctx == NULL) {
        mctx = pcre2_match_context_create(NULL);
        if (mctx == NULL)
            return -1;
        pcre2_set_match_limit(mctx, RE_MATCH_LIMIT);
        pcre2_set_depth_limit(mctx, RE_DEPTH_LIMIT);
        pcre2_set_heap_limit(mctx, RE_HEAP_KIB);
    }
    int rc = pcre2_match(p->code, (PCRE2_SPTR)s, strlen(s), 0, 0, p->md, mctx);
    if (rc >= 0)
        return 1;
    return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

static size_t eval_string(struct vctx *c, const struct js_node *n, const char *s)
{
    size_t e = 0;
    if (n->min_length > 0 || n->max_length != SIZE_MAX) {
        size_t len = utf8_length(s);
        if (len < n->min_length)
            e += emit(c, "minLength", "string is %zu characters long; the minimum is %zu", len,
                      n->min_length);
        if (len > n->max_length && !stop(c, e))
            e += emit(c, "maxLength", "string is %zu characters long; the maximum is %zu", len,
                      n->max_length);
    }
    int m = n->pattern != NULL && !stop(c, e) ? pattern_match(n->pattern, s) : 1;
    if (m == 0)
        e += emit(c, "pattern", "string does not match the pattern \"%s\"", n->pattern->source);
    else if (m < 0)
        e += emit(c, "pattern",
                  "string could not be matched against the pattern \"%s\" within mcpvisor's "
                  "matching limits",
                  n->pattern->source);
    return e;
}

static size_t eval_array(struct vctx *c, const struct js_node *n, const cJSON *inst)
{
    size_t e = 0, len = (size_t)cJSON_GetArraySize(inst);
    if (len < n->min_items)
        e += emit(c, "minItems", "array has %zu items; the minimum is %zu", len, n->min_items);
    if (len > n->max_items && !stop(c, e))
        e += emit(c, "maxItems", "array has %zu items; the maximum is %zu", len, n->max_items);
    if (stop(c, e))
        return e;
    if (n->nprefix > 0 || n->rest != NULL) {
        size_t i = 0;
        for (const cJSON *v = inst->child; v != NULL; v = v->next, i++) {
            if (!step(c))
                return e + 1;
            if (i < n->nprefix) {
                e += eval_child(c, n->prefix[i], v, NULL, i, n->prefix_kw);
            } else if (n->rest == NULL) {
                break;
            } else if (n->rest->boolean == 0) {
                size_t mark = path_push_index(&c->path, i);
                e += emit(c, n->rest_kw, "item %zu is not allowed: at most %zu items", i,
                          n->nprefix);
                path_pop(&c->path, mark);
            } else {
                e += eval_child(c, n->rest, v, NULL, i, n->rest_kw);
            }
            if (stop(c, e))
                return e;
        }
    }
    if (n->unique) {
        size_t i = 0;
        for (const cJSON *a = inst->child; a != NULL; a = a->next, i++) {
            size_t j = i + 1;
            for (const cJSON *b = a->next; b != NULL; b = b->next, j++) {
                if (json_equal(c, a, b)) {
                    e += emit(c, "uniqueItems", "items %zu and %zu are equal", i, j);
                    return e;
                }
                if (c->aborted)
                    return e + 1;
            }
        }
    }
    if (n->contains != NULL) {
        size_t matches = 0, i = 0;
        bool need_all = n->max_contains != SIZE_MAX;
        for (const cJSON *v = inst->child; v != NULL; v = v->next, i++) {
            if (!step(c))
                return e + 1;
            if (quiet_eval_child(c, n->contains, v, NULL, i) == 0)
                matches++;
            if (!need_all && matches >= n->min_contains)
                break;
        }
        if (c->aborted)
            return e + 1;
        if (matches < n->min_contains) {
            if (n->min_contains == 1)
                e += emit(c, "contains", "no item matches the contains schema");
            else
                e += emit(c, "minContains",
                          "%zu items match the contains schema; the minimum is %zu", matches,
                          n->min_contains);
        } else if (matches > n->max_contains) {
            e += emit(c, "maxContains", "%zu items match the contains schema; the maximum is %zu",
                      matches, n->max_contains);
        }
    }
    return e;
}

static bool has_member(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name) != NULL;
}

static size_t eval_object(struct vctx *c, const struct js_node *n, const cJSON *inst)
{
    size_t e = 0;
    if (n->min_props > 0 || n->max_props != SIZE_MAX) {
        size_t count = (size_t)cJSON_GetArraySize(inst);
        if (count < n->min_props)
            e += emit(c, "minProperties", "object has %zu properties; the minimum is %zu", count,
                      n->min_props);
        if (count > n->max_props && !stop(c, e))
            e += emit(c, "maxProperties", "object has %zu properties; the maximum is %zu", count,
                      n->max_props);
    }
    for (size_t i = 0; i < n->nrequired && !stop(c, e); i++)
        if (!has_member(inst, n->required[i]))
            e += emit(c, "required", "missing required property \"%s\"", n->required[i]);
    for (size_t i = 0; i < n->ndepreq && !stop(c, e); i++) {
        const struct js_depreq *d = &n->depreq[i];
        if (!has_member(inst, d->name))
            continue;
        for (size_t j = 0; j < d->n && !stop(c, e); j++)
            if (!has_member(inst, d->required[j]))
                e += emit(c, n->depreq_kw, "property \"%s\" is required when \"%s\" is present",
                          d->required[j], d->name);
    }
    if (stop(c, e))
        return e;
    bool members = n->nprops > 0 || n->npatprops > 0 || n->additional_props != NULL ||
                   n->property_names != NULL;
    for (const cJSON *m = members ? inst->child : NULL; m != NULL; m = m->next) {
        if (!step(c))
            return e + 1;
        bool matched = false;
        for (size_t i = 0; i < n->nprops && !stop(c, e); i++)
            if (strcmp(n->props[i].name, m->string) == 0) {
                matched = true;
                e += eval_child(c, n->props[i].schema, m, m->string, 0, "properties");
            }
        for (size_t i = 0; i < n->npatprops && !stop(c, e); i++) {
            int pm = pattern_match(n->patprops[i].pattern, m->string);
            if (pm < 0) {
                matched = true; /* refused below, not let through as "additional" */
                size_t mark = path_push(&c->path, m->string);
                e += emit(c, "patternProperties",
                          "property name could not be matched against the pattern \"%s\" "
                          "within mcpvisor's matching limits",
                          n->patprops[i].pattern->source);
                path_pop(&c->path, mark);
            } else if (pm == 1) {
                matched = true;
                e += eval_child(c, n->patprops[i].schema, m, m->string, 0, "patternProperties");
            }
        }
        if (!matched && n->additional_props != NULL && !stop(c, e)) {
            if (n->additional_props->boolean == 0) {
                size_t mark = path_push(&c->path, m->string);
                e += emit(c, "additionalProperties", "property \"%s\" is not allowed", m->string);
                path_pop(&c->path, mark);
            } else {
                e += eval_child(c, n->additional_props, m, m->string, 0, "additionalProperties");
            }
        }
        if (n->property_names != NULL && !stop(c, e)) {
            cJSON name;
            memset(&name, 0, sizeof name);
            name.type = cJSON_String;
            name.valuestring = m->string;
            if (quiet_eval(c, n->property_names, &name) != 0) {
                size_t mark = path_push(&c->path, m->string);
                e += emit(c, "propertyNames", "property name \"%s\" is not allowed", m->string);
                path_pop(&c->path, mark);
            }
        }
        if (stop(c, e))
            return e;
    }
    for (size_t i = 0; i < n->ndepsch && !stop(c, e); i++)
        if (has_member(inst, n->depsch[i].name))
            e += eval(c, n->depsch[i].schema, inst, n->depsch_kw);
    return e;
}

static size_t eval_applicators(struct vctx *c, const struct js_node *n, const cJSON *inst)
{
    size_t e = 0;
    for (size_t i = 0; i < n->nall && !stop(c, e); i++)
        e += eval(c, n->all[i], inst, "allOf");
    if (n->nany > 0 && !stop(c, e)) {
        bool ok = false;
        for (size_t i = 0; i < n->nany && !ok && !c->aborted; i++)
            ok = quiet_eval(c, n->any[i], inst) == 0;
        if (!ok)
            e += emit(c, "anyOf", "value matches none of the %zu anyOf schemas", n->nany);
    }
    if (n->none > 0 && !stop(c, e)) {
        size_t first = SIZE_MAX, second = SIZE_MAX;
        for (size_t i = 0; i < n->none && second == SIZE_MAX && !c->aborted; i++) {
            if (quiet_eval(c, n->one[i], inst) != 0)
                continue;
            if (first == SIZE_MAX)
                first = i;
            else
                second = i;
        }
        if (first == SIZE_MAX)
            e += emit(c, "oneOf", "value matches none of the %zu oneOf schemas", n->none);
        else if (second != SIZE_MAX)
            e += emit(c, "oneOf", "value matches oneOf schemas %zu and %zu; exactly one must match",
                      first, second);
    }
    if (n->not_schema != NULL && !stop(c, e) && quiet_eval(c, n->not_schema, inst) == 0)
        e += emit(c, "not", "value matches the schema it must not match (not)");
    if (n->if_schema != NULL && !stop(c, e)) {
        if (quiet_eval(c, n->if_schema, inst) == 0) {
            if (n->then_schema != NULL)
                e += eval(c, n->then_schema, inst, "then");
        } else if (n->else_schema != NULL && !c->aborted) {
            e += eval(c, n->else_schema, inst, "else");
        }
    }
    return e;
}

/* Applies n to inst; returns the number of errors (in quiet mode: 0, or at least 1). `via` is the
 * keyword that applied n, named when n is the schema false. */
static size_t eval(struct vctx *c, const struct js_node *n, const cJSON *inst, const char *via)
{
    if (n->nassert == 0)
        return 0;
    if (!step(c))
        return 1;
    if (n->boolean == 0)
        return emit(c, via[0] != '\0' ? via : "false", "no value is allowed here (schema false)");
    size_t e = 0;
    if (n->ref != NULL)
        e += eval(c, n->ref, inst, "$ref");
    if (!stop(c, e))
        e += eval_generic(c, n, inst);
    if (!stop(c, e)) {
        if (cJSON_IsNumber(inst))
            e += eval_number(c, n, inst->valuedouble);
        else if (cJSON_IsString(inst))
            e += eval_string(c, n, inst->valuestring);
        else if (cJSON_IsArray(inst))
            e += eval_array(c, n, inst);
        else if (cJSON_IsObject(inst))
            e += eval_object(c, n, inst);
    }
    if (!stop(c, e))
        e += eval_applicators(c, n, inst);
    return e;
}

size_t jsonschema_validate(const struct jsonschema *s, const cJSON *instance,
                           struct jsonschema_error *errs, size_t max)
{
    struct vctx c = {.errs = errs, .max = errs != NULL ? max : 0};
    eval(&c, s->root, instance, "");
    return c.count;
}
