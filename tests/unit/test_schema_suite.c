/*
 * test_schema_suite.c — the official JSON-Schema-Test-Suite run through supervisor/jsonschema.c:
 * every case of the keyword files we support, for draft-07 and 2020-12. The suite comes from the
 * Debian package json-schema-test-suite (/usr/share/json-schema-test-suite), or from the checkout
 * named by MCPVISOR_SCHEMA_SUITE. A draft that suite lacks is read from the excerpt kept in
 * tests/schema-suite (Debian 12's package, 2.0.0, predates 2020-12). A group whose schema the
 * compiler refuses (remote references, $id below the root, ...) is counted as skipped and its
 * reason printed; a case that gets the wrong verdict fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jsonschema.h"

#define SUITE_DEFAULT  "/usr/share/json-schema-test-suite"
#define SUITE_VENDORED "tests/schema-suite" /* relative to the repository, where make runs */
#define SUITE_MAX_FILE (8u << 20)

static const char *const draft7_files[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if-then-else",
    "ref",
    "boolean_schema",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependencies",
    "contains",
    "default",
    "format",
    "infinite-loop-detection",
    NULL,
};

static const char *const draft2020_files[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if-then-else",
    "ref",
    "boolean_schema",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "contains",
    "minContains",
    "maxContains",
    "default",
    "format",
    "infinite-loop-detection",
    NULL,
};

struct counts {
    size_t passed, failed, skipped, absent;
};

static const char *suite_root(void)
{
    const char *env = getenv("MCPVISOR_SCHEMA_SUITE");
    return env != NULL && env[0] != '\0' ? env : SUITE_DEFAULT;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(SUITE_MAX_FILE + 1);
    size_t n = buf != NULL ? fread(buf, 1, SUITE_MAX_FILE + 1, f) : 0;
    fclose(f);
    if (buf == NULL || n > SUITE_MAX_FILE) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The suite's draft-07 schemas carry no "$schema", and ours default to 2020-12: say which. */
static void mark_draft(cJSON *schema, const char *draft)
{
    if (strcmp(draft, "draft7") != 0 || !cJSON_IsObject(schema) ||
        cJSON_GetObjectItemCaseSensitive(schema, "$schema") != NULL)
        return;
    cJSON_AddStringToObject(schema, "$schema", "http://json-schema.org/draft-07/schema#");
}

static void run_case(const struct jsonschema *s, const char *where, const cJSON *group,
                     const cJSON *test, struct counts *n)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(test, "data");
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(test, "valid");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(test, "description");
    const cJSON *gdesc = cJSON_GetObjectItemCaseSensitive(group, "description");
    assert_non_null(data);
    assert_true(cJSON_IsBool(valid));
    struct jsonschema_error errs[4];
    memset(errs, 0, sizeof errs);
    size_t nerr = jsonschema_validate(s, data, errs, 4);
    /* The count does not depend on how many errors the caller has room for. */
    assert_int_equal(jsonschema_validate(s, data, NULL, 0), nerr);
    bool ok = (nerr == 0) == cJSON_IsTrue(valid);
    for (size_t i = 0; i < nerr && i < 4; i++)
        ok = ok && errs[i].keyword[0] != '\0' && errs[i].message[0] != '\0';
    if (ok) {
        n->passed++;
        return;
    }
    n->failed++;
    char *text = cJSON_PrintUnformatted(data);
    fprintf(stderr, "FAIL %s: %s / %s: data %s: expected %s, got %zu errors%s%s%s%s%s\n", where,
            cJSON_IsString(gdesc) ? gdesc->valuestring : "?",
            cJSON_IsString(desc) ? desc->valuestring : "?", text != NULL ? text : "?",
            cJSON_IsTrue(valid) ? "valid" : "invalid", nerr, nerr > 0 ? " (first: " : "",
            nerr > 0 ? errs[0].instance : "", nerr > 0 ? " " : "", nerr > 0 ? errs[0].keyword : "",
            nerr > 0 ? ")" : "");
    free(text);
}

static void run_file(const char *root, const char *draft, const char *name, struct counts *n)
{
    char path[4096], where[256];
    snprintf(path, sizeof path, "%s/tests/%s/%s.json", root, draft, name);
    snprintf(where, sizeof where, "%s/%s.json", draft, name);
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "absent %s (not in this release of the suite)\n", where);
        n->absent++;
        return;
    }
    char *text = read_file(path);
    assert_non_null(text);
    cJSON *groups = cJSON_Parse(text);
    free(text);
    assert_true(cJSON_IsArray(groups));
    const cJSON *group;
    cJSON_ArrayForEach(group, groups)
    {
        cJSON *schema = cJSON_GetObjectItemCaseSensitive(group, "schema");
        const cJSON *tests = cJSON_GetObjectItemCaseSensitive(group, "tests");
        const cJSON *gdesc = cJSON_GetObjectItemCaseSensitive(group, "description");
        assert_non_null(schema);
        assert_true(cJSON_IsArray(tests));
        mark_draft(schema, draft);
        char err[1024];
        struct jsonschema *s = jsonschema_compile(schema, err, sizeof err);
        if (s == NULL) {
            assert_true(err[0] != '\0');
            n->skipped += (size_t)cJSON_GetArraySize(tests);
            fprintf(stderr, "skip %s: %s: %s\n", where,
                    cJSON_IsString(gdesc) ? gdesc->valuestring : "?", err);
            continue;
        }
        const cJSON *test;
        cJSON_ArrayForEach(test, tests)
        {
            run_case(s, where, group, test, n);
        }
        jsonschema_free(s);
    }
    cJSON_Delete(groups);
}

static void run_draft(const char *draft, const char *const *files)
{
    const char *root = suite_root();
    char dir[4096];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/tests/%s", root, draft);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        root = SUITE_VENDORED;
        snprintf(dir, sizeof dir, "%s/tests/%s", root, draft);
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        printf("schema-suite %s: skipped (no %s; the Debian package json-schema-test-suite 2.0.0 "
               "ships draft3 to draft7 only: set MCPVISOR_SCHEMA_SUITE to a newer checkout)\n",
               draft, dir);
        skip();
    }
    struct counts n = {0};
    for (size_t i = 0; files[i] != NULL; i++)
        run_file(root, draft, files[i], &n);
    printf("schema-suite %s: %zu passed, %zu failed, %zu skipped (%s", draft, n.passed, n.failed,
           n.skipped, root);
    if (n.absent > 0)
        printf("; %zu keyword files absent", n.absent);
    printf(")\n");
    fflush(stdout);
    assert_int_equal(n.failed, 0);
}

static void test_draft7(void **state)
{
    run_draft("draft7", draft7_files);
}

static void test_draft2020_12(void **state)
{
    run_draft("draft2020-12", draft2020_files);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_draft7),
        cmocka_unit_test(test_draft2020_12),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
