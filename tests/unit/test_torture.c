/*
 * Allocation-failure ("torture") tests of the parsers that read hostile input: each is run with
 * its Nth allocation failing, for every N until a run needs no more, and must return an error
 * (never crash, never report success with missing parts). Leaks are LeakSanitizer's to find: the
 * unit tests also run under ASan. Allocations are counted through the linker (--wrap for the
 * library's own malloc family) and cJSON's hooks (its allocations happen inside libcjson).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "config.h"
#include "jcs.h"
#include "jose.h"
#include "jsonrpc.h"
#include "jsonschema.h"
#include "jsonstrict.h"

static long fail_at = -1; /* the allocation (from 0) that fails; -1: none */
static long seen;         /* allocations asked for since the run started */

static int fails_now(void)
{
    return fail_at >= 0 && seen++ == fail_at;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n)
{
    return fails_now() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size)
{
    return fails_now() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    return fails_now() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s)
{
    return fails_now() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n)
{
    return fails_now() ? NULL : __real_strndup(s, n);
}

static void *hook_malloc(size_t n)
{
    return fails_now() ? NULL : __real_malloc(n);
}

static int setup(void **state)
{
    (void)state;
    cJSON_Hooks hooks = {hook_malloc, free};
    cJSON_InitHooks(&hooks);
    return 0;
}

/* Runs fn with allocation N failing, N = 0, 1, …, until fn needs fewer than N + 1 allocations
 * (it then ran without a failure: its result must be the full one). fn returns 0 on success. */
static void torture(int (*fn)(void *), void *arg, const char *what)
{
    for (long n = 0;; n++) {
        seen = 0;
        fail_at = n;
        int rc = fn(arg);
        long asked = seen;
        fail_at = -1;
        if (asked <= n) { /* nothing failed this time */
            if (rc != 0)
                fail_msg("%s fails without an allocation failure", what);
            return;
        }
        if (n > 100000)
            fail_msg("%s: more than 100000 allocations", what);
    }
}

/* ---- the parsers ------------------------------------------------------------------------- */

static const char MSG[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
                          "\"name\":\"echo\",\"arguments\":{\"text\":\"h\\u00e9llo\",\"n\":[1,2.5,"
                          "-0,1e3],\"o\":{\"b\":true,\"a\":null}}}}";

static int run_jsonrpc(void *arg)
{
    (void)arg;
    const char *problem;
    size_t at;
    cJSON *v = jsonrpc_parse(MSG, sizeof(MSG) - 1, &problem, &at);
    if (v == NULL)
        return -1;
    int rc = problem == NULL && jsonrpc_classify(v) == JSONRPC_REQUEST ? 0 : -1;
    cJSON_Delete(v);
    return rc;
}

static void jsonrpc_parse_survives_allocation_failure(void **state)
{
    (void)state;
    torture(run_jsonrpc, NULL, "jsonrpc_parse");
}

static void jsonstrict_allocates_nothing(void **state)
{
    (void)state;
    struct jsonstrict_error bad;
    seen = 0;
    fail_at = 0; /* the first allocation would fail, were there one */
    int rc = jsonstrict_check(MSG, sizeof(MSG) - 1, &bad);
    fail_at = -1;
    assert_int_equal(rc, 0);
    assert_int_equal(seen, 0);
}

static int run_jcs(void *arg)
{
    const cJSON *v = arg;
    size_t len = 0;
    char *out = jcs_canonicalize(v, &len);
    if (out == NULL)
        return -1;
    int rc = strncmp(out, "{\"id\":7,\"jsonrpc\"", 17) == 0 && len == strlen(out) ? 0 : -1;
    free(out);
    return rc;
}

static void jcs_survives_allocation_failure(void **state)
{
    (void)state;
    cJSON *v = cJSON_Parse(MSG);
    assert_non_null(v);
    torture(run_jcs, v, "jcs_canonicalize");
    cJSON_Delete(v);
}

static const char SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"text\"],\"additionalProperties\":false,"
    "\"properties\":{\"text\":{\"type\":\"string\",\"maxLength\":64,\"pattern\":\"^h\"},"
    "\"n\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"maxItems\":8},"
    "\"o\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"b\":{\"const\":true}}},"
    "{\"type\":\"null\"}]}},\"$defs\":{\"x\":{\"enum\":[1,\"a\",null]}}}";

static int run_schema(void *arg)
{
    const cJSON *instance = arg;
    cJSON *js = cJSON_Parse(SCHEMA);
    if (js == NULL)
        return -1;
    char err[256];
    struct jsonschema *s = jsonschema_compile(js, err, sizeof(err));
    cJSON_Delete(js);
    if (s == NULL)
        return -1;
    struct jsonschema_error errs[4];
    size_t n = jsonschema_validate(s, instance, errs, 4);
    jsonschema_free(s);
    return n == 0 ? 0 : -1;
}

static void jsonschema_survives_allocation_failure(void **state)
{
    (void)state;
    cJSON *msg = cJSON_Parse(MSG);
    assert_non_null(msg);
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(msg, "params"), "arguments");
    torture(run_schema, (void *)args, "jsonschema compile and validate");
    cJSON_Delete(msg);
}

/* RFC 7517 appendix A.1's public keys. */
static const char JWKS[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
    "\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4"
    "\",\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\",\"use\":\"enc\",\"kid\":\"1\"},{"
    "\"kty\":"
    "\"RSA\",\"n\":"
    "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
    "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
    "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQF"
    "h6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\",\"e\":\"AQAB\","
    "\"alg\":\"RS256\",\"kid\":\"2011-04-29\"}]}";

static int run_jwks(void *arg)
{
    (void)arg;
    struct jose_keyset ks;
    char err[256];
    if (jose_jwks_parse(JWKS, sizeof(JWKS) - 1, &ks, err, sizeof(err)) == -1)
        return -1;
    jose_keyset_free(&ks);
    return 0;
}

static void jwks_survives_allocation_failure(void **state)
{
    (void)state;
    torture(run_jwks, NULL, "jose_jwks_parse");
}

/* ---- configuration, from memory ------------------------------------------------------------ */

static const char CONFIG[] =
    "{\"listen\":[{\"address\":\"127.0.0.1:8080\"}],\"manifests_dir\":\"/m\","
    "\"tenants\":{\"acme\":{\"servers\":[\"echo\"],\"quota_scale\":0.5}},"
    "\"limits\":{\"max_sessions\":100}}";
static const char MANIFEST[] =
    "{\"name\":\"echo\",\"command\":[\"/bin/cat\",\"-u\"],\"env\":{\"A\":\"b\"},"
    "\"isolation\":\"tenant\",\"pool\":{\"min_idle\":1},\"sandbox\":{\"read_only\":[\"/usr\"]},"
    "\"tools\":{\"echo\":{\"version\":\"1\",\"quota\":{\"rate\":\"5/s\"}}}}";

static int mem_read(void *ctx, const char *path, char **buf, size_t *len)
{
    const char *text = strcmp(path, "/c/mcpvisor.json") == 0 ? CONFIG
                       : strcmp(path, "/m/echo.json") == 0   ? MANIFEST
                                                             : NULL;
    if (text == NULL)
        return -1;
    *buf = strdup(text);
    if (*buf == NULL)
        return -1;
    *len = strlen(text);
    return 0;
}

static int mem_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    if (strcmp(dir, "/m") != 0)
        return -1;
    *names = calloc(1, sizeof(char *));
    if (*names == NULL)
        return -1;
    (*names)[0] = strdup("echo.json");
    if ((*names)[0] == NULL) {
        free(*names);
        return -1;
    }
    *n = 1;
    return 0;
}

static int run_config(void *arg)
{
    (void)arg;
    const struct config_source src = {mem_read, mem_list, NULL};
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_load(&src, "/c/mcpvisor.json", err, sizeof(err));
    if (cfg == NULL)
        return -1;
    int rc = config_manifest_find(cfg, "echo") != NULL && cfg->ntenants == 1 ? 0 : -1;
    config_free(cfg);
    return rc;
}

static void config_load_survives_allocation_failure(void **state)
{
    (void)state;
    torture(run_config, NULL, "config_load");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jsonstrict_allocates_nothing),
        cmocka_unit_test(jsonrpc_parse_survives_allocation_failure),
        cmocka_unit_test(jcs_survives_allocation_failure),
        cmocka_unit_test(jsonschema_survives_allocation_failure),
        cmocka_unit_test(jwks_survives_allocation_failure),
        cmocka_unit_test(config_load_survives_allocation_failure),
    };
    return cmocka_run_group_tests_name("torture", tests, setup, NULL);
}
