/*
 * jsonstrict.c — the strict JSON judge: one pass over a text's bytes, before any parser builds a
 * value from them (jsonrpc_parse, for client bodies and child output lines alike).
 *
 * Owns: RFC 8259's grammar with I-JSON's restrictions (RFC 7493), strict UTF-8, and the ceilings
 * on number length and nesting. Why: cJSON is lenient (leading zeros, any byte <= 0x20 as
 * whitespace, a leading byte order mark, invalid UTF-8 and raw control characters in strings),
 * and the original bytes are what the child reads: every byte a stricter parser could refuse or
 * read differently is refused here, before it is checked or forwarded.
 *
 * Invariants: a single forward pass, never rereading a byte more than a fixed number of times;
 * nesting is kept in a fixed bit stack of JSONSTRICT_MAX_DEPTH bits, so no recursion and no
 * allocation. Never allocates, never builds a value, never logs, never reads past len.
 */
#include "jsonstrict.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

struct scan {
    const unsigned char *p;
    size_t len;
    size_t i; /* the next byte to read */
    struct jsonstrict_error *err;
};

static int fail(struct scan *s, size_t at, const char *what)
{
    s->err->offset = at;
    s->err->what = what;
    return -1;
}

/* RFC 8259 §2: ws = *( %x20 / %x09 / %x0A / %x0D ), nothing else. */
static void skip_ws(struct scan *s)
{
    while (s->i < s->len &&
           (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\n' || s->p[s->i] == '\r'))
        s->i++;
}

/* Not what the grammar expects at s->i: names the byte when it is one a lenient parser would
 * take for whitespace or that cannot start any token, else `what`. */
static int unexpected(struct scan *s, const char *what)
{
    if (s->i >= s->len)
        return fail(s, s->i, "the text ends early");
    if (s->p[s->i] < 0x20)
        return fail(s, s->i,
                    "a control character outside a string (whitespace is only space, tab, LF, CR)");
    if (s->p[s->i] >= 0x80)
        return fail(s, s->i, "a byte above 0x7f outside a string");
    return fail(s, s->i, what);
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Unicode noncharacters: U+FDD0..U+FDEF and the last two code points of every plane. */
static bool noncharacter(unsigned long cp)
{
    return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe;
}

/*
 * One UTF-8 sequence at s->i, whose lead byte is >= 0x80 (Unicode 15, table 3-7: the second
 * byte's range excludes overlong forms, surrogates and code points above U+10FFFF).
 */
static int utf8_sequence(struct scan *s)
{
    size_t at = s->i;
    unsigned char b = s->p[at];
    unsigned char lo = 0x80, hi = 0xbf;
    const char *range = "an overlong UTF-8 sequence";
    unsigned long cp;
    size_t n; /* continuation bytes */

    if (b < 0xc0)
        return fail(s, at, "a UTF-8 continuation byte without a lead byte");
    if (b < 0xc2)
        return fail(s, at, "an overlong UTF-8 sequence");
    if (b < 0xe0) {
        n = 1;
        cp = b & 0x1f;
    } else if (b < 0xf0) {
        n = 2;
        cp = b & 0x0f;
        if (b == 0xe0) {
            lo = 0xa0;
        } else if (b == 0xed) {
            hi = 0x9f;
            range = "a UTF-16 surrogate encoded in UTF-8";
        }
    } else if (b < 0xf5) {
        n = 3;
        cp = b & 0x07;
        if (b == 0xf0) {
            lo = 0x90;
        } else if (b == 0xf4) {
            hi = 0x8f;
            range = "a code point above U+10FFFF";
        }
    } else if (b < 0xf8) {
        return fail(s, at, "a code point above U+10FFFF");
    } else {
        return fail(s, at, "a byte that never occurs in UTF-8");
    }
    for (size_t k = 1; k <= n; k++) {
        if (s->len - at <= k || s->p[at + k] < 0x80 || s->p[at + k] > 0xbf)
            return fail(s, at, "a truncated UTF-8 sequence");
        if (k == 1 && (s->p[at + 1] < lo || s->p[at + 1] > hi))
            return fail(s, at, range);
        cp = cp << 6 | (s->p[at + k] & 0x3f);
    }
    if (noncharacter(cp))
        return fail(s, at, "a Unicode noncharacter");
    s->i = at + n + 1;
    return 0;
}

/* Four hex digits at text[at:at+4], into *out; -1 if there are fewer. */
static int hex4(const struct scan *s, size_t at, unsigned long *out)
{
    unsigned long v = 0;

    if (at > s->len || s->len - at < 4)
        return -1;
    for (size_t k = 0; k < 4; k++) {
        int d = util_hex_digit((unsigned char)s->p[at + k]);
        if (d < 0)
            return -1;
        v = v << 4 | (unsigned long)d;
    }
    *out = v;
    return 0;
}

/* One escape at s->i (a backslash). */
static int escape(struct scan *s)
{
    size_t at = s->i;
    unsigned long cp, low;

    if (s->len - at < 2)
        return fail(s, at, "an unterminated string");
    switch (s->p[at + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        s->i = at + 2;
        return 0;
    case 'u':
        break;
    default:
        return fail(s, at, "an invalid escape (only \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
    }
    if (hex4(s, at + 2, &cp) == -1)
        return fail(s, at, "a \\u escape without four hex digits");
    s->i = at + 6;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(s, at, "a lone UTF-16 surrogate escape (a low half with no high half)");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        /* I-JSON §2.1: only a pair names a character; a lone half would be decoded differently
         * by every parser (U+FFFD, an error, or invalid UTF-8 passed on). */
        if (s->len - s->i < 6 || s->p[s->i] != '\\' || s->p[s->i + 1] != 'u' ||
            hex4(s, s->i + 2, &low) == -1 || low < 0xdc00 || low > 0xdfff)
            return fail(s, at, "a lone UTF-16 surrogate escape (a high half with no low half)");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        s->i += 6;
    }
    if (noncharacter(cp))
        return fail(s, at, "a Unicode noncharacter");
    return 0;
}

/* A string at s->i (its opening quote): a value or a member name. */
static int string(struct scan *s)
{
    size_t start = s->i++;

    while (s->i < s->len) {
        unsigned char c = s->p[s->i];
        if (c == '"') {
            s->i++;
            return 0;
        }
        if (c == '\\') {
            if (escape(s) == -1)
                return -1;
        } else if (c < 0x20) {
            return fail(s, s->i, "a raw control character in a string (it must be escaped)");
        } else if (c >= 0x80) {
            if (utf8_sequence(s) == -1)
                return -1;
        } else {
            s->i++;
        }
    }
    return fail(s, start, "an unterminated string");
}

/* RFC 8259 §6: number = [ minus ] int [ frac ] [ exp ]; int = zero / ( digit1-9 *DIGIT ). */
static int number(struct scan *s)
{
    size_t start = s->i;

    if (s->p[s->i] == '-')
        s->i++;
    if (s->i >= s->len || !is_digit(s->p[s->i]))
        return fail(s, start, "a minus sign without digits");
    if (s->p[s->i] == '0') {
        s->i++;
        if (s->i < s->len && is_digit(s->p[s->i]))
            return fail(s, start, "a number with a leading zero");
    }
    while (s->i < s->len && is_digit(s->p[s->i]))
        s->i++;
    if (s->i < s->len && s->p[s->i] == '.') {
        s->i++;
        if (s->i >= s->len || !is_digit(s->p[s->i]))
            return fail(s, start, "a decimal point without digits after it");
        while (s->i < s->len && is_digit(s->p[s->i]))
            s->i++;
    }
    if (s->i < s->len && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
        s->i++;
        if (s->i < s->len && (s->p[s->i] == '+' || s->p[s->i] == '-'))
            s->i++;
        if (s->i >= s->len || !is_digit(s->p[s->i]))
            return fail(s, start, "an exponent without digits");
        while (s->i < s->len && is_digit(s->p[s->i]))
            s->i++;
    }
    if (s->i - start > JSONSTRICT_MAX_NUMBER_CHARS)
        return fail(s, start,
                    "a number longer than " STR(JSONSTRICT_MAX_NUMBER_CHARS) " characters");
    return 0;
}

static int literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);

    if (s->len - s->i < n || memcmp(s->p + s->i, word, n) != 0)
        return unexpected(s, "expected a value");
    s->i += n;
    return 0;
}

/* An object member's name and its colon, at s->i; leaves s->i at the value. */
static int member_name(struct scan *s)
{
    if (s->i >= s->len || s->p[s->i] != '"')
        return unexpected(s, "expected a member name (a string)");
    if (string(s) == -1)
        return -1;
    skip_ws(s);
    if (s->i >= s->len || s->p[s->i] != ':')
        return unexpected(s, "expected ':' after a member name");
    s->i++;
    skip_ws(s);
    return 0;
}

int jsonstrict_check(const char *text, size_t len, struct jsonstrict_error *err)
{
    /* Bit d set: the container at depth d (0 outermost) is an object. */
    unsigned char objects[(JSONSTRICT_MAX_DEPTH + 7) / 8];
    struct scan s = {(const unsigned char *)text, len, 0, err};
    size_t depth = 0;

    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        return fail(&s, 0, "a byte order mark");
    skip_ws(&s);
    for (;;) {
        /* A value starts at s.i. */
        int rc = 0;
        if (s.i >= len)
            return fail(&s, s.i, depth == 0 ? "no JSON value" : "the text ends early");
        switch (s.p[s.i]) {
        case '{':
        case '[': {
            bool object = s.p[s.i] == '{';
            if (depth == JSONSTRICT_MAX_DEPTH)
                return fail(&s, s.i,
                            "arrays and objects nested deeper than " STR(JSONSTRICT_MAX_DEPTH));
            if (object)
                objects[depth / 8] |= (unsigned char)(1u << (depth % 8));
            else
                objects[depth / 8] &= (unsigned char)~(1u << (depth % 8));
            depth++;
            s.i++;
            skip_ws(&s);
            if (s.i < len && s.p[s.i] == (object ? '}' : ']')) {
                depth--;
                s.i++;
                break; /* empty: a whole value */
            }
            if (object && member_name(&s) == -1)
                return -1;
            continue; /* the first element's value */
        }
        case '"':
            rc = string(&s);
            break;
        case 't':
            rc = literal(&s, "true");
            break;
        case 'f':
            rc = literal(&s, "false");
            break;
        case 'n':
            rc = literal(&s, "null");
            break;
        default:
            if (s.p[s.i] == '-' || is_digit(s.p[s.i]))
                rc = number(&s);
            else
                rc = unexpected(&s, "expected a value");
            break;
        }
        if (rc == -1)
            return -1;
        /* A value ended: close the containers it completes, until one expects another value. */
        for (;;) {
            skip_ws(&s);
            if (depth == 0) {
                if (s.i != len)
                    return unexpected(&s, "data after the JSON value");
                return 0;
            }
            bool object = (objects[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1u;
            if (s.i < len && s.p[s.i] == ',') {
                s.i++;
                skip_ws(&s);
                if (object && member_name(&s) == -1)
                    return -1;
                break;
            }
            if (s.i < len && s.p[s.i] == (object ? '}' : ']')) {
                depth--;
                s.i++;
                continue;
            }
            return unexpected(&s, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
}
