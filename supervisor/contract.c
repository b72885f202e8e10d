/*
 * contract.c — tool definitions measured against their pins, and the schemas their calls are
 * checked with (see contract.h).
 *
 * The cache holds one entry per pin with a reference count. It is keyed by the first 64 bits of
 * the pin and a hit is confirmed on the whole pin: a server choosing definitions whose pins share
 * a prefix must not get another definition's schemas (a collision is simply not cached).
 */
#include "contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"

struct contract_schemas {
    char pin[JCS_PIN_HEX];
    unsigned refs;
    bool cached;
    struct jsonschema *input;  /* NULL: none given */
    struct jsonschema *output; /* NULL: none given */
    char *error;               /* why a schema cannot be used, or NULL */
};

static struct idmap cache;
static bool cache_ready;
static size_t cache_len;

static uint64_t pin_key(const char *pin)
{
    uint64_t k = 0;
    for (int i = 0; i < 16; i++) {
        char ch = pin[i];
        unsigned v = ch >= '0' && ch <= '9' ? (unsigned)(ch - '0') : (unsigned)(ch - 'a' + 10);
        k = (k << 4) | (v & 15);
    }
    return k;
}

const char *contract_schema_error(const struct contract_schemas *s)
{
    return s != NULL ? s->error : NULL;
}

bool contract_has_output_schema(const struct contract_schemas *s)
{
    return s != NULL && s->output != NULL;
}

struct contract_schemas *contract_schemas_ref(struct contract_schemas *s)
{
    if (s != NULL)
        s->refs++;
    return s;
}

void contract_schemas_unref(struct contract_schemas *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    if (s->cached) {
        idmap_del(&cache, pin_key(s->pin));
        cache_len--;
    }
    jsonschema_free(s->input);
    jsonschema_free(s->output);
    free(s->error);
    free(s);
}

size_t contract_schemas_nodes(const struct contract_schemas *s)
{
    return s != NULL ? jsonschema_nodes(s->input) + jsonschema_nodes(s->output) : 0;
}

size_t contract_cache_size(void)
{
    return cache_len;
}

/* Compiles one of a definition's schemas; on failure appends the reason to s->error. */
static int compile_one(struct contract_schemas *s, const cJSON *tool, const char *member,
                       struct jsonschema **out)
{
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(tool, member);
    char err[512] = "";
    if (schema == NULL)
        return 0;
    if (!cJSON_IsObject(schema))
        snprintf(err, sizeof(err), "must be an object");
    else
        *out = jsonschema_compile(schema, err, sizeof(err));
    if (*out != NULL)
        return 0;
    size_t have = s->error != NULL ? strlen(s->error) : 0;
    size_t need = have + strlen(member) + strlen(err) + 8;
    char *grown = realloc(s->error, need);
    if (grown == NULL)
        return -1;
    snprintf(grown + have, need - have, "%s%s: %s", have > 0 ? "; " : "", member, err);
    s->error = grown;
    return 0;
}

/* As contract_schemas_get; *compiled tells whether it was compiled now (a cache miss). */
static struct contract_schemas *schemas_get(const cJSON *tool, const char *pin, bool *compiled)
{
    *compiled = false;
    if (!cache_ready) {
        idmap_init(&cache);
        cache_ready = true;
    }
    struct contract_schemas *s = idmap_get(&cache, pin_key(pin));
    if (s != NULL && strcmp(s->pin, pin) == 0)
        return contract_schemas_ref(s);
    bool collides = s != NULL;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    memcpy(s->pin, pin, JCS_PIN_HEX);
    s->refs = 1;
    *compiled = true;
    if (compile_one(s, tool, "inputSchema", &s->input) == -1 ||
        compile_one(s, tool, "outputSchema", &s->output) == -1) {
        contract_schemas_unref(s);
        return NULL;
    }
    if (!collides && idmap_put(&cache, pin_key(pin), s) == 0) {
        s->cached = true;
        cache_len++;
    }
    return s;
}

struct contract_schemas *contract_schemas_get(const cJSON *tool, const char *pin)
{
    bool compiled;
    return schemas_get(tool, pin, &compiled);
}

/* ---- listings ---------------------------------------------------------------------------- */

struct contract *contract_new(const struct config_manifest *m)
{
    struct contract *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        c->m = m;
        c->max_tools = CONTRACT_MAX_TOOLS;
        c->max_pages = CONTRACT_MAX_PAGES;
    }
    return c;
}

void contract_free(struct contract *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->tools[i].name);
        contract_schemas_unref(c->tools[i].schemas);
    }
    free(c->tools);
    free(c);
}

static int tool_cmp(const void *a, const void *b)
{
    return strcmp(((const struct contract_tool *)a)->name, ((const struct contract_tool *)b)->name);
}

const struct contract_tool *contract_find(const struct contract *c, const char *name)
{
    if (c == NULL)
        return NULL;
    if (c->sorted) {
        struct contract_tool key = {.name = (char *)name};
        return bsearch(&key, c->tools, c->n, sizeof(*c->tools), tool_cmp);
    }
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->tools[i].name, name) == 0)
            return &c->tools[i];
    }
    return NULL;
}

int contract_finish(struct contract *c, char *err, size_t errlen)
{
    if (c->n > 1)
        qsort(c->tools, c->n, sizeof(*c->tools), tool_cmp);
    for (size_t i = 1; i < c->n; i++) {
        if (strcmp(c->tools[i - 1].name, c->tools[i].name) == 0) {
            snprintf(err, errlen, "tools/list: the tool \"%.128s\" is listed twice",
                     c->tools[i].name);
            return -1;
        }
    }
    c->sorted = true;
    return 0;
}

enum contract_verdict contract_judge(const struct config_manifest *m, const struct config_tool *t,
                                     const char *pin, bool schemas_ok)
{
    (void)m;
    if (t == NULL)
        return CONTRACT_UNLISTED;
    if (t->sha256 != NULL && strcmp(t->sha256, pin) != 0)
        return CONTRACT_DRIFT;
    if (!schemas_ok)
        return CONTRACT_BAD_SCHEMA;
    return t->sha256 != NULL ? CONTRACT_PINNED : CONTRACT_UNPINNED;
}

bool contract_hides(const struct config_manifest *m, enum contract_verdict v)
{
    switch (v) {
    case CONTRACT_UNLISTED:
        return !m->unlisted_tools_allow;
    case CONTRACT_DRIFT:
    case CONTRACT_BAD_SCHEMA:
        return m->pin_mode == CONFIG_PIN_ENFORCE;
    default:
        return false;
    }
}

int contract_add_page(struct contract *c, const cJSON *tools, char *err, size_t errlen)
{
    if (!cJSON_IsArray(tools)) {
        snprintf(err, errlen, "tools/list: the result has no \"tools\" array");
        return -1;
    }
    c->sorted = false; /* contract_finish sorts again */
    if (++c->pages > c->max_pages) {
        snprintf(err, errlen, "tools/list: more than %u pages (limits.max_listing_pages)",
                 c->max_pages);
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        if (!cJSON_IsObject(t) || !cJSON_IsString(name) || name->valuestring[0] == '\0') {
            snprintf(err, errlen, "tools/list: a tool without a name");
            return -1;
        }
        if (c->n >= c->max_tools) {
            snprintf(err, errlen, "tools/list: more than %zu tools (limits.max_listing_tools)",
                     c->max_tools);
            return -1;
        }
        struct contract_tool ct = {0};
        if (jcs_tool_pin(t, ct.pin) == -1) {
            snprintf(err, errlen,
                     "tools/list: the definition of \"%.128s\" cannot be canonicalized (RFC 8785)",
                     name->valuestring);
            return -1;
        }
        if (c->n == c->cap) {
            size_t cap = c->cap < 16 ? 16 : 2 * c->cap;
            struct contract_tool *grown = realloc(c->tools, cap * sizeof(*grown));
            if (grown == NULL)
                goto oom;
            c->tools = grown;
            c->cap = cap;
        }
        bool compiled = false;
        ct.name = strdup(name->valuestring);
        ct.schemas = ct.name != NULL ? schemas_get(t, ct.pin, &compiled) : NULL;
        if (ct.schemas == NULL) {
            free(ct.name);
            goto oom;
        }
        size_t nodes = contract_schemas_nodes(ct.schemas);
        c->nodes += nodes;
        if (compiled)
            c->nodes_compiled += nodes;
        ct.cfg = config_tool_find(c->m, ct.name);
        ct.verdict = contract_judge(c->m, ct.cfg, ct.pin, ct.schemas->error == NULL);
        c->tools[c->n++] = ct;
        if (c->max_nodes != 0 && c->nodes > c->max_nodes) {
            snprintf(err, errlen,
                     "tools/list: the tools' schemas compile to more than %zu nodes "
                     "(limits.max_listing_schema_nodes)",
                     c->max_nodes);
            return -1;
        }
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- calls ------------------------------------------------------------------------------- */

size_t contract_check_arguments(const struct contract_schemas *s, const cJSON *args,
                                struct jsonschema_error *errs, size_t max)
{
    if (s == NULL || s->input == NULL)
        return 0;
    if (args != NULL)
        return jsonschema_validate(s->input, args, errs, max);
    cJSON *empty = cJSON_CreateObject();
    if (empty == NULL) {
        if (max > 0) {
            snprintf(errs[0].instance, sizeof(errs[0].instance), "%s", "");
            snprintf(errs[0].keyword, sizeof(errs[0].keyword), "%s", "memory");
            snprintf(errs[0].message, sizeof(errs[0].message), "%s", "out of memory");
        }
        return 1;
    }
    size_t n = jsonschema_validate(s->input, empty, errs, max);
    cJSON_Delete(empty);
    return n;
}

static int shape_error(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "%s", what);
    return -1;
}

int contract_check_result(const struct contract_schemas *s, const cJSON *msg, char *why,
                          size_t whylen, struct jsonschema_error *errs, size_t max, size_t *nerrs)
{
    *nerrs = 0;
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(msg, "result");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
    if ((result == NULL) == (error == NULL))
        return shape_error(why, whylen, "a response needs exactly one of result and error");
    if (error != NULL) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
        if (!cJSON_IsObject(error) || !cJSON_IsNumber(code) ||
            !(code->valuedouble >= -9007199254740992.0 &&
              code->valuedouble <= 9007199254740992.0) ||
            code->valuedouble != (double)(long long)code->valuedouble || !cJSON_IsString(message))
            return shape_error(why, whylen,
                               "the error needs an integer \"code\" and a string \"message\"");
        return 0;
    }
    if (!cJSON_IsObject(result))
        return shape_error(why, whylen, "the result of tools/call must be an object");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(result, "content");
    if (!cJSON_IsArray(content))
        return shape_error(why, whylen, "the result needs a \"content\" array (CallToolResult)");
    const cJSON *item;
    cJSON_ArrayForEach(item, content)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
        if (!cJSON_IsObject(item) || !cJSON_IsString(type))
            return shape_error(why, whylen,
                               "every element of \"content\" must be an object with a string "
                               "\"type\"");
    }
    const cJSON *is_error = cJSON_GetObjectItemCaseSensitive(result, "isError");
    if (is_error != NULL && !cJSON_IsBool(is_error))
        return shape_error(why, whylen, "\"isError\" must be a boolean");
    const cJSON *structured = cJSON_GetObjectItemCaseSensitive(result, "structuredContent");
    if (structured != NULL && !cJSON_IsObject(structured))
        return shape_error(why, whylen, "\"structuredContent\" must be an object");
    if (s == NULL || s->output == NULL || cJSON_IsTrue(is_error))
        return 0;
    if (structured == NULL)
        return shape_error(why, whylen,
                           "the tool declares an outputSchema, so its result needs "
                           "\"structuredContent\"");
    size_t n = jsonschema_validate(s->output, structured, errs, max);
    if (n == 0)
        return 0;
    *nerrs = n;
    return shape_error(why, whylen, "\"structuredContent\" does not match the tool's outputSchema");
}
