/*
 * jcs.c — RFC 8785 JSON Canonicalization Scheme (JCS) over cJSON trees, and tool pins.
 *
 * Owns: the canonical serializer (member order by UTF-16 code units, minimal string escapes,
 * ECMAScript number formatting) and the SHA-256 pin of a tool definition. Pure: no I/O, no
 * logging, no global state; every path frees what it made.
 *
 * Invariants: the output is a function of the tree's values only (never of member order,
 * whitespace or escapes in the text it was parsed from); strings and names are strict UTF-8 or
 * the whole call fails (two parsers may repair bad bytes differently, and a pin must never
 * depend on which one ran); recursion is bounded by JCS_MAX_DEPTH; size arithmetic is checked.
 *
 * Numbers (§3.2.2.3): ECMAScript's Number::toString picks the fewest significant digits k that
 * read back as the same double and, among k-digit candidates, the one nearest the value. We get
 * those digits from the C library, whose printf and strtod are correctly rounded: "%.{p}e" prints
 * the (p+1)-digit decimal nearest x, and strtod tells whether it reads back as x; 17 digits
 * always do, and we search p = 0..16 for the least that does. One case needs more: at a power of
 * two the gap to the next lower double is half the gap to the next higher one, so the nearest
 * (p+1)-digit decimal may lie just below x and miss while its neighbour one unit higher
 * round-trips; we try that neighbour before adding a digit. The digits are then laid out by
 * ECMA-262's rules on k and n (x = digits × 10^(n−k)). No external library; checked against
 * RFC 8785's Appendix B and the published ES6 number test file (tests/unit/test_jcs.c).
 */
#include "jcs.h"
#include "strbuf.h"
#include "util.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JCS_DIGITS_MAX 17 /* significant digits that always identify a double */
#define JCS_NUMBER_MAX 32 /* the longest, "-0.00000" and 17 digits, is 25 bytes and the NUL */

/* ---- UTF-8 and UTF-16 order ---------------------------------------------------------------- */

/*
 * Decodes one code point of s[*i..n) into *cp and advances *i. Strict (RFC 3629): refuses
 * overlong forms, UTF-16 surrogates (U+D800..U+DFFF), values beyond U+10FFFF, stray
 * continuation bytes and truncated sequences. Returns 0 or -1.
 */
static int utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    size_t need;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return 0;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07, min = 0x10000;
    } else {
        return -1; /* continuation byte, C0/C1 (always overlong) or F5..FF */
    }
    if (n - *i - 1 < need)
        return -1;
    for (size_t k = 1; k <= need; k++) {
        unsigned char cc = s[*i + k];
        if ((cc & 0xC0) != 0x80)
            return -1;
        v = (v << 6) | (cc & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    *cp = v;
    *i += need + 1;
    return 0;
}

static int utf8_check(const char *s)
{
    size_t n = strlen(s), i = 0;
    uint32_t cp;
    while (i < n)
        if (utf8_next((const unsigned char *)s, n, &i, &cp) == -1)
            return -1;
    return 0;
}

/*
 * Orders two valid UTF-8 strings as sequences of UTF-16 code units (RFC 8785 §3.2.3). UTF-8
 * byte order is code point order, which differs from UTF-16 order in one place: a code point
 * above U+FFFF is a surrogate pair starting with 0xD800..0xDBFF, so it sorts before
 * U+E000..U+FFFF. Two such code points compare as their pairs do, i.e. by code point.
 */
static int utf16_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i = 0, j = 0;

    while (i < la && j < lb) {
        uint32_t ca, cb;
        if (utf8_next((const unsigned char *)a, la, &i, &ca) == -1 ||
            utf8_next((const unsigned char *)b, lb, &j, &cb) == -1)
            return 0; /* cannot happen: names are checked before sorting */
        if (ca == cb)
            continue;
        if (ca < 0x10000 || cb < 0x10000) {
            if (ca >= 0x10000)
                ca = 0xD800 + ((ca - 0x10000) >> 10);
            if (cb >= 0x10000)
                cb = 0xD800 + ((cb - 0x10000) >> 10);
        }
        return ca < cb ? -1 : 1; /* a BMP code point is never a surrogate, so never equal here */
    }
    return (i < la) - (j < lb);
}

/* ---- strings ------------------------------------------------------------------------------- */

/*
 * Writes s as a JCS string literal (§3.2.2.2): \b \t \n \f \r \" \\, the other control characters
 * as \u00xx, every other byte of valid UTF-8 as it is. Returns 0, or -1 on invalid UTF-8.
 */
static int put_string(struct strbuf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0, run = 0; /* run: bytes before i still to copy as they are */

    strbuf_putc(b, '"');
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t start = i;
            if (utf8_next(u, n, &i, &cp) == -1)
                return -1;
            run += i - start;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++, i++;
            continue;
        }
        strbuf_put(b, s + i - run, run);
        run = 0;
        switch (c) {
        case '\b':
            strbuf_put(b, "\\b", 2);
            break;
        case '\t':
            strbuf_put(b, "\\t", 2);
            break;
        case '\n':
            strbuf_put(b, "\\n", 2);
            break;
        case '\f':
            strbuf_put(b, "\\f", 2);
            break;
        case '\r':
            strbuf_put(b, "\\r", 2);
            break;
        case '"':
            strbuf_put(b, "\\\"", 2);
            break;
        case '\\':
            strbuf_put(b, "\\\\", 2);
            break;
        default: {
            char esc[7] = "\\u00";
            util_hex(&c, 1, esc + 4);
            strbuf_put(b, esc, 6);
        }
        }
        i++;
    }
    strbuf_put(b, s + n - run, run);
    strbuf_putc(b, '"');
    return 0;
}

/* ---- numbers ------------------------------------------------------------------------------- */

/*
 * Whether some (p+1)-digit decimal reads back as x (finite, > 0); if so, the one ECMAScript picks
 * (the nearest to x) goes to digits[0..*nd) with the decimal exponent *e of its first digit.
 * "%.{p}e" prints the nearest such decimal; when it misses, the only other candidate that can
 * hit is its neighbour one unit up (see the file comment): every other one is farther from x on
 * a side whose half-gap is no wider.
 */
static bool try_digits(double x, int p, char digits[JCS_DIGITS_MAX + 1], int *nd, int *e)
{
    char tmp[40], cand[48];
    int n = 0, pos;

    snprintf(tmp, sizeof tmp, "%.*e", p, x); /* d[.ddd]e±XX, correctly rounded by glibc */
    char *ep = strchr(tmp, 'e');
    for (const char *q = tmp; q < ep; q++)
        if (*q != '.')
            digits[n++] = *q;
    *nd = n;
    *e = (int)strtol(ep + 1, NULL, 10);
    if (strtod(tmp, NULL) == x)
        return true;

    for (pos = n - 1; pos >= 0 && digits[pos] == '9'; pos--)
        digits[pos] = '0';
    if (pos >= 0) {
        digits[pos]++;
    } else { /* 9.99 + 0.01 = 10.00: 1.000 one decade up */
        digits[0] = '1';
        (*e)++;
    }
    snprintf(cand, sizeof cand, "%c.%.*se%d", digits[0], n - 1, digits + 1, *e);
    return strtod(cand, NULL) == x;
}

/*
 * The shortest digits of finite x > 0 (see the file comment): digits[0..*k) without trailing
 * zeros, NUL-terminated, and the decimal exponent e of the first digit (x ≈ d.ddd × 10^e).
 * Whether some (p+1)-digit decimal round-trips is monotonic in p (those decimals are among the
 * (p+2)-digit ones) and true at p = 16, so a binary search finds the least p.
 */
static void shortest_digits(double x, char digits[JCS_DIGITS_MAX + 1], int *k, int *e)
{
    int lo = 0, hi = JCS_DIGITS_MAX - 1, nd = 0;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (try_digits(x, mid, digits, &nd, e))
            hi = mid;
        else
            lo = mid + 1;
    }
    if (!try_digits(x, lo, digits, &nd, e)) /* cannot happen: 17 digits always round-trip */
        try_digits(x, JCS_DIGITS_MAX - 1, digits, &nd, e);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    *k = nd;
}

/*
 * Formats finite x as ECMAScript's Number::toString (ECMA-262 §6.1.6.1.20, RFC 8785 §3.2.2.3)
 * into out. With the shortest digits s of k digits and n such that x = s × 10^(n−k):
 *   k ≤ n ≤ 21    s and n−k zeros                     (1e20 → 100000000000000000000)
 *   0 < n ≤ 21    s with a point after n digits        (1.5, 333333333.3333333)
 *   −6 < n ≤ 0    "0." then −n zeros, then s           (0.000001)
 *   otherwise     d[.ddd]e±(n−1)                        (1e+21, 1e-7, 1.5e-7)
 */
static int format_number(double x, char out[JCS_NUMBER_MAX])
{
    char d[JCS_DIGITS_MAX + 1];
    size_t o = 0;
    int k, e, n;

    if (!isfinite(x))
        return -1;
    if (x == 0) { /* both +0 and -0 */
        memcpy(out, "0", 2);
        return 0;
    }
    if (x < 0) {
        out[o++] = '-';
        x = -x;
    }
    shortest_digits(x, d, &k, &e);
    n = e + 1;
    if (k <= n && n <= 21) {
        memcpy(out + o, d, (size_t)k);
        o += (size_t)k;
        memset(out + o, '0', (size_t)(n - k));
        o += (size_t)(n - k);
    } else if (0 < n && n <= 21) {
        memcpy(out + o, d, (size_t)n);
        o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, d + n, (size_t)(k - n));
        o += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        memset(out + o, '0', (size_t)-n);
        o += (size_t)-n;
        memcpy(out + o, d, (size_t)k);
        o += (size_t)k;
    } else {
        out[o++] = d[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, d + 1, (size_t)(k - 1));
            o += (size_t)(k - 1);
        }
        snprintf(out + o, JCS_NUMBER_MAX - o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
        return 0;
    }
    out[o] = '\0';
    return 0;
}

/* ---- values -------------------------------------------------------------------------------- */

struct jcs_member {
    const cJSON *item;
    size_t index; /* position in the input: ties (duplicate names) keep it, so the sort is stable */
};

static int member_cmp(const void *pa, const void *pb)
{
    const struct jcs_member *a = pa, *b = pb;
    int c = utf16_cmp(a->item->string, b->item->string);
    if (c != 0)
        return c;
    return (a->index > b->index) - (a->index < b->index);
}

static int put_value(struct strbuf *b, const cJSON *v, int depth);

static int put_object(struct strbuf *b, const cJSON *v, int depth)
{
    struct jcs_member *m = NULL;
    size_t n = 0, i = 0;
    int rc = -1;

    for (const cJSON *c = v->child; c != NULL; c = c->next) {
        if (c->string == NULL || utf8_check(c->string) == -1)
            return -1;
        n++;
    }
    if (n == 0) {
        strbuf_put(b, "{}", 2);
        return 0;
    }
    if (n > SIZE_MAX / sizeof *m || (m = malloc(n * sizeof *m)) == NULL)
        return -1;
    for (const cJSON *c = v->child; c != NULL; c = c->next, i++)
        m[i] = (struct jcs_member){c, i};
    qsort(m, n, sizeof *m, member_cmp);

    strbuf_putc(b, '{');
    for (i = 0; i < n; i++) {
        if (i > 0)
            strbuf_putc(b, ',');
        if (put_string(b, m[i].item->string) == -1)
            goto out;
        strbuf_putc(b, ':');
        if (put_value(b, m[i].item, depth) == -1)
            goto out;
    }
    strbuf_putc(b, '}');
    rc = 0;
out:
    free(m);
    return rc;
}

/* depth: how many arrays and objects enclose v. */
static int put_value(struct strbuf *b, const cJSON *v, int depth)
{
    char num[JCS_NUMBER_MAX];

    if (cJSON_IsNull(v)) {
        strbuf_put(b, "null", 4);
    } else if (cJSON_IsTrue(v)) {
        strbuf_put(b, "true", 4);
    } else if (cJSON_IsFalse(v)) {
        strbuf_put(b, "false", 5);
    } else if (cJSON_IsNumber(v)) {
        if (format_number(v->valuedouble, num) == -1)
            return -1;
        strbuf_put(b, num, strlen(num));
    } else if (cJSON_IsString(v)) {
        if (v->valuestring == NULL)
            return -1;
        return put_string(b, v->valuestring);
    } else if (cJSON_IsArray(v)) {
        if (depth >= JCS_MAX_DEPTH)
            return -1;
        strbuf_putc(b, '[');
        for (const cJSON *c = v->child; c != NULL; c = c->next) {
            if (c != v->child)
                strbuf_putc(b, ',');
            if (put_value(b, c, depth + 1) == -1)
                return -1;
        }
        strbuf_putc(b, ']');
    } else if (cJSON_IsObject(v)) {
        if (depth >= JCS_MAX_DEPTH)
            return -1;
        return put_object(b, v, depth + 1);
    } else {
        return -1; /* cJSON_Raw (opaque text) or cJSON_Invalid */
    }
    return 0;
}

char *jcs_canonicalize(const cJSON *v, size_t *len)
{
    struct strbuf b = {0};

    if (v == NULL || put_value(&b, v, 0) == -1 || b.failed || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    if (len != NULL)
        *len = b.len;
    return b.p;
}

/* ---- tool pins ----------------------------------------------------------------------------- */

int jcs_tool_pin(const cJSON *tool, char out[JCS_PIN_HEX])
{
    /* The members a pin covers, already in canonical (UTF-16) order, so the object is written
     * directly; the tests compare it with jcs_canonicalize of the same members. */
    static const char *const pinned[] = {"annotations", "description",  "inputSchema",
                                         "name",        "outputSchema", "title"};
    struct strbuf b = {0};
    bool first = true;
    int rc = -1;

    out[0] = '\0';
    if (!cJSON_IsObject(tool))
        return -1;
    strbuf_putc(&b, '{');
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(tool, pinned[i]);
        if (m == NULL)
            continue;
        if (!first)
            strbuf_putc(&b, ',');
        first = false;
        (void)put_string(&b, pinned[i]); /* ASCII: cannot fail */
        strbuf_putc(&b, ':');
        if (put_value(&b, m, 1) == -1)
            goto out;
    }
    strbuf_putc(&b, '}');
    if (b.failed || util_sha256_hex(b.p, b.len, out) == -1) {
        out[0] = '\0';
        goto out;
    }
    rc = 0;
out:
    free(b.p);
    return rc;
}
