/*
 * contract.h — a server's tools held against its manifest (DESIGN.md, "Manifests"): which listed
 * tools match their pins, which drifted or are not in the manifest, and the compiled schemas
 * their arguments and results are checked with.
 *
 * Pure apart from one cache: compiled schemas are shared by pin (the pin covers inputSchema and
 * outputSchema, so one pin means one pair of schemas), compiled once however many children list
 * the same definition, and freed with their last reference. No I/O, no logging.
 */
#ifndef MCPVISOR_CONTRACT_H
#define MCPVISOR_CONTRACT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "jcs.h"
#include "jsonschema.h"

#define CONTRACT_MAX_TOOLS  1000 /* tools in one listing, unless the contract says otherwise */
#define CONTRACT_MAX_PAGES  20   /* tools/list pages in one listing, likewise */
#define CONTRACT_MAX_ERRORS 16   /* validation errors reported to a caller */

enum contract_verdict {
    CONTRACT_PINNED = 0, /* in the manifest, matches its sha256 */
    CONTRACT_UNPINNED,   /* in the manifest without a sha256 */
    CONTRACT_DRIFT,      /* in the manifest, differs from its sha256 */
    CONTRACT_UNLISTED,   /* not in the manifest */
    CONTRACT_BAD_SCHEMA, /* a schema mcpvisor cannot validate with (unsupported keyword, malformed)
                          */
};

struct contract_schemas; /* compiled inputSchema and outputSchema of one definition */

struct contract_tool {
    char *name;
    char pin[JCS_PIN_HEX];         /* the definition as the server lists it now */
    const struct config_tool *cfg; /* borrowed from the manifest; NULL when it does not name it */
    enum contract_verdict verdict;
    struct contract_schemas *schemas; /* a reference; never NULL once added */
};

struct contract {
    const struct config_manifest *m; /* borrowed */
    struct contract_tool *tools;
    size_t n;
    size_t cap;
    unsigned pages;
    bool sorted; /* contract_finish sorted tools by name: lookups are binary searches */
    /* Ceilings (contract_new sets the defaults above; 0 nodes = no ceiling). */
    size_t max_tools;
    unsigned max_pages;
    size_t max_nodes;
    size_t nodes;          /* compiled schema nodes its tools hold (shared ones counted too) */
    size_t nodes_compiled; /* of those, compiled for this listing (not found in the cache) */
};

struct contract *contract_new(const struct config_manifest *m);
void contract_free(struct contract *c);

/* Adds the tools of one tools/list page (`tools`, borrowed: result.tools). Returns 0, or -1 with
 * a message naming the problem (not an array, a tool without a name, more than max_tools tools,
 * max_pages pages or max_nodes schema nodes, a definition that cannot be canonicalized). */
int contract_add_page(struct contract *c, const cJSON *tools, char *err, size_t errlen);

/* The listing is complete: sorts it by name (O(n log n), so a long listing cannot stall the
 * event loop) and refuses a name listed twice. Returns 0, or -1 with a message. */
int contract_finish(struct contract *c, char *err, size_t errlen);

const struct contract_tool *contract_find(const struct contract *c, const char *name);

/* The verdict for one definition of a manifest's server. */
enum contract_verdict contract_judge(const struct config_manifest *m, const struct config_tool *t,
                                     const char *pin, bool schemas_ok);

/* Whether the manifest's modes hide a tool with this verdict (and refuse calls to it). */
bool contract_hides(const struct config_manifest *m, enum contract_verdict v);

/* Why the schemas of a tool cannot be used (NULL when they can). Borrowed. */
const char *contract_schema_error(const struct contract_schemas *s);
bool contract_has_output_schema(const struct contract_schemas *s);

struct contract_schemas *contract_schemas_ref(struct contract_schemas *s);
void contract_schemas_unref(struct contract_schemas *s); /* NULL is fine */

/*
 * A tool definition's schemas compiled (or found in the cache). Never NULL unless out of
 * memory; a schema that does not compile gives an object whose contract_schema_error says why.
 */
struct contract_schemas *contract_schemas_get(const cJSON *tool, const char *pin);

/* Validates call arguments (NULL stands for {}) against inputSchema; returns the number of
 * errors, the first `max` in errs. s may be NULL or without an inputSchema: 0. */
size_t contract_check_arguments(const struct contract_schemas *s, const cJSON *args,
                                struct jsonschema_error *errs, size_t max);

/*
 * Checks a server's answer to tools/call (`msg`, a parsed message with that request's id): a
 * JSON-RPC error with an integer code and a string message, or a result that is a valid
 * CallToolResult (content an array of objects with a string type, isError boolean,
 * structuredContent an object) whose structuredContent is valid against the outputSchema (and
 * present when the tool has one, unless isError). s may be NULL: the shape alone. Returns 0, or
 * -1 with a sentence in why and schema errors (their count in *nerrs).
 */
int contract_check_result(const struct contract_schemas *s, const cJSON *msg, char *why,
                          size_t whylen, struct jsonschema_error *errs, size_t max, size_t *nerrs);

/* Schema nodes of one tool's compiled schemas (input and output together). */
size_t contract_schemas_nodes(const struct contract_schemas *s);

/* The number of distinct compiled definitions alive (for tests and metrics). */
size_t contract_cache_size(void);

#endif
