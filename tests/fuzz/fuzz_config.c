/*
 * fuzz_config.c — configuration, manifests, API keys and config bundles (config.c), from bytes.
 *
 * Each input is loaded twice, through an in-memory struct config_source, never the filesystem:
 *   - as a bundle (config_bundle_source, what the unprivileged front re-validates); when it is
 *     one, its configuration is loaded from it;
 *   - as files: the input cut at lines "%%" into /etc/mcpvisor/mcpvisor.json, the manifests
 *     echo.json and invoices.json of any folder, and one more file served for every other path
 *     (the API keys, a jwks_file, TLS certificates and keys).
 * A configuration that loads is built into a bundle, and that bundle must load again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_PATH  "/etc/mcpvisor/mcpvisor.json"
#define FUZZ_PARTS 4

struct files {
    const char *part[FUZZ_PARTS];
    size_t len[FUZZ_PARTS];
    size_t n;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int mem_read(void *ctx, const char *path, char **buf, size_t *len)
{
    const struct files *f = ctx;
    size_t i;

    if (strcmp(path, FUZZ_PATH) == 0)
        i = 0;
    else if (ends_with(path, "/echo.json"))
        i = 1;
    else if (ends_with(path, "/invoices.json"))
        i = 2;
    else
        i = 3;
    if (i >= f->n) {
        errno = ENOENT;
        return -1;
    }
    if ((*buf = malloc(f->len[i] + 1)) == NULL)
        return -1;
    memcpy(*buf, f->part[i], f->len[i]);
    (*buf)[f->len[i]] = '\0';
    *len = f->len[i];
    return 0;
}

static int mem_list(void *ctx, const char *dir, char ***names, size_t *n)
{
    const struct files *f = ctx;
    static const char *const manifest[] = {"echo.json", "invoices.json"};

    *n = 0;
    if ((*names = calloc(2, sizeof **names)) == NULL)
        return -1;
    for (size_t i = 1; i < f->n && i <= 2; i++)
        if (((*names)[*n] = strdup(manifest[i - 1])) != NULL)
            (*n)++;
    return 0;
}

/* Loads from src; a configuration that loads must survive a bundle round trip. */
static void load(const struct config_source *src, const char *path)
{
    char err[CONFIG_ERR_MAX];
    struct config *cfg = config_load(src, path, err, sizeof err);

    if (cfg == NULL) {
        if (memchr(err, '\0', sizeof err) == NULL)
            abort();
        return;
    }
    for (size_t i = 0; i < cfg->nmanifests; i++)
        if (config_manifest_find(cfg, cfg->manifests[i].name) == NULL)
            abort();
    for (size_t i = 0; i < cfg->ntenants; i++)
        if (config_tenant_find(cfg, cfg->tenants[i].name) == NULL)
            abort();
    size_t len;
    char *bundle = config_bundle_build(src, path, &len, err, sizeof err);
    if (bundle != NULL) {
        struct config_source bsrc;
        char *bpath = NULL;
        if (config_bundle_source(bundle, len, &bsrc, &bpath, err, sizeof err) != 0)
            abort();
        free(bundle);
        struct config *again = config_load(&bsrc, bpath, err, sizeof err);
        if (again == NULL || again->nmanifests != cfg->nmanifests ||
            again->ntenants != cfg->ntenants || again->napi_keys != cfg->napi_keys)
            abort();
        config_free(again);
        config_bundle_source_free(&bsrc);
        free(bpath);
    }
    config_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config_source src;
    char err[CONFIG_ERR_MAX], *path = NULL;
    char *copy = malloc(size > 0 ? size : 1);

    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    if (config_bundle_source(copy, size, &src, &path, err, sizeof err) == 0) {
        free(copy); /* the source keeps its own copy */
        copy = NULL;
        load(&src, path);
        config_bundle_source_free(&src);
        free(path);
    } else if (memchr(err, '\0', sizeof err) == NULL) {
        abort();
    }
    free(copy);

    struct files f = {0};
    const char *p = (const char *)data, *end = p + size;
    while (f.n < FUZZ_PARTS) {
        const char *sep = memmem(p, (size_t)(end - p), "\n%%\n", 4);
        f.part[f.n] = p;
        f.len[f.n] = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);
        f.n++;
        if (sep == NULL)
            break;
        p = sep + 4;
    }
    src = (struct config_source){mem_read, mem_list, &f};
    load(&src, FUZZ_PATH);
    return 0;
}
