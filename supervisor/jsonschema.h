/*
 * jsonschema.h — JSON Schema validation of tool arguments and results. A schema is compiled once
 * (when its tool is pinned) into an immutable graph and then validated against many instances.
 * Pure: no I/O, no global state; a compiled schema may be shared between threads.
 *
 * Drafts: draft-07 and 2020-12, chosen by the root "$schema" (either draft's meta-schema URI,
 * http or https, with or without the trailing "#"); a schema without "$schema" is 2020-12. Any
 * other "$schema" is refused.
 *
 * Keywords enforced: type ("integer" = a number with zero fraction), enum, const (deep equality,
 * 1.0 == 1), minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers only: draft-04's
 * boolean forms are refused), multipleOf (relative tolerance 1e-9 on the quotient), minLength and
 * maxLength (Unicode code points), pattern, properties, patternProperties, additionalProperties,
 * required, minProperties, maxProperties, propertyNames, dependentRequired and dependentSchemas
 * (2020-12), dependencies (draft-07), items, prefixItems (2020-12), items in its array form and
 * additionalItems (draft-07), minItems, maxItems, uniqueItems, contains, minContains and
 * maxContains (2020-12), allOf, anyOf, oneOf, not, if/then/else, $ref, boolean schemas.
 * "$defs" and "definitions" hold subschemas in both drafts; both are compiled (and so checked)
 * even when nothing refers to them. In draft-07 the siblings of "$ref" are ignored, as that
 * draft says; in 2020-12 they apply alongside it.
 *
 * $ref: "#", "#/json/pointer" (percent-encoded as a URI fragment), the root's "$id" followed by
 * either, and "#name" when the root's "$anchor" is name. References are resolved at compile
 * time. Subschemas that apply to the same value (allOf, anyOf, oneOf, not, if/then/else, $ref,
 * dependent schemas) must not form a cycle: {"$ref": "#"} alone is refused, while a recursive
 * schema that descends into the value first (items, properties, ...) is fine.
 *
 * Annotations, accepted and not asserted: title, description, default, examples, $comment,
 * deprecated, readOnly, writeOnly, contentMediaType, contentEncoding, contentSchema (2020-12),
 * discriminator (OpenAPI's hint beside a oneOf, which pydantic emits; the oneOf decides), format
 * (any format name; no format is asserted, as both drafts allow), and $id, $anchor and $schema at
 * the root. Every other keyword — unevaluatedProperties, unevaluatedItems, $dynamicRef,
 * $dynamicAnchor, $recursiveRef, $id or $anchor below the root, remote $refs, vendor keywords, a
 * keyword of the other draft — fails compilation with an error naming each one and its JSON pointer
 * in the schema, so `mcpvisor check` can report them.
 *
 * pattern and patternProperties: ECMA-262 patterns are translated to POSIX extended regular
 * expression syntax and matched by PCRE2 (UTF-8, "$" only at the end, "." as any code point for
 * the translated [^]), unanchored like ECMA's RegExp.test. Translated: \d \D \w \W (ASCII, as
 * in ECMA), \s \S (ECMA's white space and line terminators), "." (any code point but a line
 * terminator), \n \t \r \f \v \cX \xHH \uHHHH \u{H...} and escaped punctuation, classes with
 * escapes inside ("]", "^" and "-" moved to where they read literally; ranges beyond ASCII listed
 * code point by code point, up to 1024; [^] as any code point), (?:...) and (?<name>...) as plain
 * groups, lazy quantifiers as greedy ones (the same answer when only asking whether a match
 * exists), a "{" that starts no quantifier as a literal. Refused at compile time as unsupported:
 * lookahead and lookbehind, backreferences, \b \B, \p{...}, inline flags, NUL outside a class,
 * \D \W \S inside a class, the empty class [], a quantifier after a quantifier (invalid ECMA-262),
 * and anything PCRE2 rejects after translation (including a pattern whose compiled form is too
 * large). A match is bounded in backtracking steps, depth and heap; one that reaches a bound is
 * a validation error with keyword "pattern" (or "patternProperties"), never a stall.
 *
 * Bounded work: validation descends at most JSONSCHEMA_MAX_DEPTH levels into the instance (a
 * deeper value a schema would look into is an error with keyword "depth"), applies at most
 * JSONSCHEMA_MAX_INPLACE subschemas in a chain to one value (checked at compile time), and stops
 * after JSONSCHEMA_MAX_STEPS units of work (an error with keyword "budget"). It never allocates.
 *
 * Strings are cJSON's C strings: a "\u0000" in a JSON string ends it, for schemas and instances
 * alike.
 */
#ifndef MCPVISOR_JSONSCHEMA_H
#define MCPVISOR_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define JSONSCHEMA_MAX_DEPTH   64      /* instance levels below the validated value */
#define JSONSCHEMA_MAX_INPLACE 32      /* subschemas applied in a chain to one value */
#define JSONSCHEMA_MAX_STEPS   1000000 /* subschema applications, items, members, comparisons */
#define JSONSCHEMA_MAX_NODES   10000   /* subschemas in one compiled schema */
#define JSONSCHEMA_MAX_NESTING 128     /* nesting of subschemas in the schema document */
#define JSONSCHEMA_MAX_PATTERN 4096    /* bytes of one pattern */

struct jsonschema; /* compiled, immutable */

/*
 * Compiles `schema` (borrowed; not referenced after the call returns). Returns the compiled
 * schema (free with jsonschema_free), or NULL with a message in err: the first malformed keyword
 * ("invalid schema at /properties/n/minimum: must be a number"), or every unsupported keyword
 * and its pointer ("unsupported keyword \"unevaluatedProperties\" at /unevaluatedProperties").
 */
struct jsonschema *jsonschema_compile(const cJSON *schema, char *err, size_t errlen);

void jsonschema_free(struct jsonschema *s);

/* Subschemas compiled (at most JSONSCHEMA_MAX_NODES): the measure of its memory, about half a
 * KiB each. 0 for NULL. */
size_t jsonschema_nodes(const struct jsonschema *s);

/* One validation error. `instance` is a JSON pointer into the instance ("" = the whole value;
 * cut short and ended with "..." past 255 bytes); `keyword` the schema keyword that failed;
 * `message` a sentence for people and models. All three are NUL-terminated UTF-8. */
struct jsonschema_error {
    char instance[256];
    char keyword[32];
    char message[160];
};

/*
 * Validates `instance` (borrowed). Returns the number of errors (0 = valid), writing the first
 * `max` of them to errs (which may be NULL when max is 0). Inside anyOf, oneOf, not, if,
 * contains and propertyNames only the keyword's own verdict is reported, not the reasons each
 * branch failed.
 */
size_t jsonschema_validate(const struct jsonschema *s, const cJSON *instance,
                           struct jsonschema_error *errs, size_t max);

#endif
