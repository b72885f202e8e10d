/*
 * test_config.c — config_load over small configurations written into a fresh temporary folder
 * (each test chdirs into its own): the exact one-line error an operator sees for each kind of
 * mistake, the defaults, path resolution, the size ceiling and the bundle round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

struct fixture {
    char dir[1024]; /* shorter than the PATH_MAX buffers that paths are built in */
    char oldcwd[PATH_MAX];
    char err[CONFIG_ERR_MAX];
};

static const char *const HASH_A =
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *const HASH_B =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static const char *const ECHO_MANIFEST = "{\"name\": \"echo\", \"command\": [\"/bin/cat\"]}";

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    if (f == NULL || getcwd(f->oldcwd, sizeof f->oldcwd) == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mcpvisor-test-config.XXXXXX");
    if (mkdtemp(f->dir) == NULL || chdir(f->dir) == -1)
        return -1;
    /* getcwd, not the mkdtemp name: the loader resolves against the real folder. */
    if (getcwd(f->dir, sizeof f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (chdir(f->oldcwd) == -1)
        return -1;
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* Writes rel (relative to the test's folder), creating its parent folders. */
static void write_bytes(const char *rel, const char *data, size_t len)
{
    char path[PATH_MAX];
    FILE *fp;

    snprintf(path, sizeof path, "%s", rel);
    for (char *p = strchr(path, '/'); p != NULL; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(path, 0755) == -1)
            assert_int_equal(errno, EEXIST);
        *p = '/';
    }
    fp = fopen(rel, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_file(const char *rel, const char *text)
{
    write_bytes(rel, text, strlen(text));
}

static struct config *load(struct fixture *f)
{
    return config_load_file("mcpvisor.json", f->err, sizeof f->err);
}

static void assert_load_fails(struct fixture *f, const char *expected)
{
    struct config *cfg = load(f);

    config_free(cfg);
    assert_null(cfg);
    assert_string_equal(f->err, expected);
}

/* mcpvisor.json and manifests/echo.json, the smallest valid pair, plus the file under test. */
static void write_echo(void)
{
    write_file("manifests/echo.json", ECHO_MANIFEST);
}

/* ---- unknown and duplicate keys ----------------------------------------------------------- */

static void unknown_top_level_key_is_an_error(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"127.0.0.1:0\"}], \"limitz\": {}}");
    assert_load_fails(f, "mcpvisor.json: /limitz: unknown key");
}

static void unknown_nested_key_is_an_error(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"limits\": {\"max_body_bytes\": 2048, \"max_bdy_bytes\": 1}}");
    assert_load_fails(f, "mcpvisor.json: /limits/max_bdy_bytes: unknown key");

    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"127.0.0.1:0\"}, {\"address\": "
                                "\"127.0.0.1:1\", \"tls\": {\"cert\": \"c\", \"key\": \"k\", "
                                "\"ca\": \"x\"}}]}");
    assert_load_fails(f, "mcpvisor.json: /listen/1/tls/ca: unknown key");

    write_file("mcpvisor.json", "{\"auth\": {\"jwt\": {\"issuer\": \"https://idp\", \"audience\": "
                                "\"a\", \"jwks_file\": \"j\", \"claims\": {\"tennant\": \"t\"}}}}");
    assert_load_fails(f, "mcpvisor.json: /auth/jwt/claims/tennant: unknown key");
}

static void unknown_manifest_key_is_an_error(void **state)
{
    struct fixture *f = *state;

    write_file("mcpvisor.json", "{}");
    write_file("manifests/echo.json",
               "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], \"tols\": {}}");
    assert_load_fails(f, "manifests/echo.json: /tols: unknown key");

    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"tools\": {\"read\": {\"quota\": {\"rat\": \"1/s\"}}}}");
    assert_load_fails(f, "manifests/echo.json: /tools/read/quota/rat: unknown key");

    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"sandbox\": {\"limits\": {\"memory\": 5}}}");
    assert_load_fails(f, "manifests/echo.json: /sandbox/limits/memory: unknown key");
}

static void duplicate_key_is_an_error(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"user\": \"a\", \"user\": \"b\"}");
    assert_load_fails(f, "mcpvisor.json: /user: duplicate key");

    write_file("mcpvisor.json", "{}");
    write_file("manifests/echo.json",
               "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
               "\"tools\": {\"read\": {\"version\": \"1\", \"version\": \"2\"}}}");
    assert_load_fails(f, "manifests/echo.json: /tools/read/version: duplicate key");
}

static void json_pointer_escapes_tilde_and_slash(void **state)
{
    struct fixture *f = *state;

    write_file("mcpvisor.json", "{}");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"env\": {\"A/B~C\": \"x\"}}");
    assert_load_fails(f, "manifests/echo.json: /env/A~1B~0C: expected an environment variable "
                         "name: [A-Za-z_][A-Za-z0-9_]*");
}

/* ---- syntax ------------------------------------------------------------------------------- */

static void syntax_error_names_line_and_column(void **state)
{
    struct fixture *f = *state;
    static const char nul[] = "{\"user\": \"a\"\0}";

    write_echo();
    /* A missing comma: the error is where the comma should have been followed. */
    write_file("mcpvisor.json", "{\n  \"user\": \"a\"\n  \"limits\": {}\n}\n");
    assert_load_fails(f, "mcpvisor.json:3:3: invalid JSON");

    write_file("mcpvisor.json", "{\n  \"user\": \"a\",\n  \"limits\": {\"x\": tru}\n}\n");
    assert_load_fails(f, "mcpvisor.json:3:19: invalid JSON");

    write_file("mcpvisor.json", "{} x");
    assert_load_fails(f, "mcpvisor.json:1:4: invalid JSON");

    write_file("mcpvisor.json", "");
    assert_load_fails(f, "mcpvisor.json:1:1: invalid JSON");

    /* cJSON takes control bytes for whitespace; JSON does not. */
    write_file("mcpvisor.json", "{\n\"user\":\x01\"a\"}");
    assert_load_fails(f, "mcpvisor.json:2:8: invalid JSON");

    write_bytes("mcpvisor.json", nul, sizeof nul - 1);
    assert_load_fails(f, "mcpvisor.json:1:13: invalid JSON");

    /* Columns count characters, not bytes. */
    write_file("mcpvisor.json", "{\"user\": \"\xc3\xa9\xff\"}");
    assert_load_fails(f, "mcpvisor.json:1:12: invalid UTF-8");

    /* cJSON would decode \u0000 into a NUL that silently cuts the string short. */
    write_file("mcpvisor.json", "{\"user\": \"ab\\u0000c\"}");
    assert_load_fails(f, "mcpvisor.json:1:13: \\u0000 is not allowed in strings");

    write_file("mcpvisor.json", "[]");
    assert_load_fails(f, "mcpvisor.json: expected a JSON object at the top level");
}

/* ---- values ------------------------------------------------------------------------------- */

static void write_rate_manifest(const char *rate)
{
    char text[512];

    snprintf(text, sizeof text,
             "{\"name\": \"invoices\", \"command\": [\"/bin/cat\"], \"tools\": {\"read_invoice\": "
             "{\"quota\": {\"rate\": %s}}}}",
             rate);
    write_file("manifests/invoices.json", text);
}

static void bad_rate_is_an_error(void **state)
{
    static const char *const bad[] = {"\"10/h\"", "\"0/s\"",   "\"1.5/s\"", "\"/s\"",
                                      "\"10\"",   "\"010/s\"", "10",        "\"10/s \""};
    struct fixture *f = *state;
    const struct config_tool *t;
    struct config *cfg;

    write_file("mcpvisor.json", "{}");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_rate_manifest(bad[i]);
        assert_load_fails(f, "manifests/invoices.json: /tools/read_invoice/quota/rate: "
                             "expected \"N/s\" or \"N/min\"");
    }
    write_rate_manifest("\"2000000/s\"");
    assert_load_fails(f, "manifests/invoices.json: /tools/read_invoice/quota/rate: "
                         "rate must be at most 1000000/s");

    write_rate_manifest("\"30/min\"");
    cfg = load(f);
    assert_non_null(cfg);
    t = config_tool_find(config_manifest_find(cfg, "invoices"), "read_invoice");
    assert_non_null(t);
    assert_true(t->quota.has_rate);
    assert_true(t->quota.rate_per_s == 0.5);
    config_free(cfg);

    write_rate_manifest("\"10/s\"");
    cfg = load(f);
    assert_non_null(cfg);
    assert_true(cfg->manifests[0].tools[0].quota.rate_per_s == 10.0);
    config_free(cfg);
}

static void wrong_types_and_ranges_are_errors(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"limits\": {\"max_body_bytes\": 512}}");
    assert_load_fails(f, "mcpvisor.json: /limits/max_body_bytes: expected an integer from 1024 "
                         "to 67108864");
    write_file("mcpvisor.json", "{\"limits\": {\"request_timeout_ms\": 0}}");
    assert_load_fails(f, "mcpvisor.json: /limits/request_timeout_ms: expected an integer from 1 "
                         "to 86400000");
    write_file("mcpvisor.json", "{\"limits\": {\"max_line_bytes\": 4096.5}}");
    assert_load_fails(f, "mcpvisor.json: /limits/max_line_bytes: expected an integer from 1024 "
                         "to 67108864");
    write_file("mcpvisor.json", "{\"user\": 5}");
    assert_load_fails(f, "mcpvisor.json: /user: expected a string");
    write_file("mcpvisor.json", "{\"user\": \"\"}");
    assert_load_fails(f, "mcpvisor.json: /user: must not be empty");
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"uid\": 0, \"gid\": 100}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/acme/uid: must not be 0 (root)");
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"uid\": 100}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/acme/gid: is required when uid is given");
    write_file("mcpvisor.json", "{\"tenants\": {\"a\": {\"uid\": 100, \"gid\": 100}, "
                                "\"b\": {\"uid\": 100, \"gid\": 101}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/b/uid: same uid as tenant \"a\"");
    write_file("mcpvisor.json", "{\"tenants\": {\"ac me\": {}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/ac me: expected a name of 1 to 63 characters "
                         "from A-Z a-z 0-9 _ . - (not . or ..)");
    write_file("mcpvisor.json", "{\"audit\": {\"sync\": \"sometimes\"}}");
    assert_load_fails(f, "mcpvisor.json: /audit/sync: expected \"always\", \"batch\" or \"none\"");
    write_file("mcpvisor.json", "{\"allowed_origins\": [\"https://app.example.com/\"]}");
    assert_load_fails(f, "mcpvisor.json: /allowed_origins/0: expected an origin: http:// or "
                         "https://, a host and an optional port, nothing after");
    /* public_url is the base of URLs in answers: nothing that could leave a quoted string,
     * carry userinfo or end in a query */
    static const char *const bad_public[] = {
        "ftp://mcp.example.com",
        "https://",
        "https://u@mcp.example.com",
        "https://mcp.example.com?x=1",
        "https://mcp.example.com/#f",
        "https://mcp.example.com/a\\\"b",
        "https://mcp.example.com/a b",
        "https://mcp.example.com:0",
        "https://mcp.example.com:x",
        "https://mcp.example.com:70000",
        "https://[::1",
        "https://mcp.example.com\\\", x=\\\"y",
    };
    for (size_t i = 0; i < sizeof(bad_public) / sizeof(bad_public[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"public_url\": \"%s\"}", bad_public[i]);
        write_file("mcpvisor.json", text);
        assert_load_fails(f, "mcpvisor.json: /public_url: expected http:// or https://, a host, an "
                             "optional port and an optional path, with no user name, query or "
                             "fragment");
    }
    static const char *const bad_hosts[] = {
        "a:b:c", "h:0", "h:70000", "h:", "[::1", "h/x", "u@h", "[]"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"allowed_hosts\": [\"%s\"]}", bad_hosts[i]);
        write_file("mcpvisor.json", text);
        assert_load_fails(f, "mcpvisor.json: /allowed_hosts/0: expected a host name or address, "
                             "optionally with :port (1-65535)");
    }
    write_file("mcpvisor.json", "{\"auth\": {\"jwt\": {\"issuer\": \"https://idp\", \"audience\": "
                                "\"a\", \"jwks_url\": \"http://idp.example.com/jwks\"}}}");
    assert_load_fails(f, "mcpvisor.json: /auth/jwt/jwks_url: expected an https:// URL (http:// "
                         "only to 127.0.0.1, localhost or [::1])");

    write_file("mcpvisor.json", "{}");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": []}");
    assert_load_fails(f, "manifests/echo.json: /command: expected a non-empty array of strings");
    write_file("manifests/echo.json", "{\"name\": \"echo\"}");
    assert_load_fails(f, "manifests/echo.json: /command: is required");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"tools\": {\"t\": {\"sha256\": \"ABCD\"}}}");
    assert_load_fails(f, "manifests/echo.json: /tools/t/sha256: expected 64 lower-case hex digits");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"secrets\": {\"TOKEN\": \"../token\"}}");
    assert_load_fails(f, "manifests/echo.json: /secrets/TOKEN: expected a file name (no '/', not "
                         ". or ..)");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"sandbox\": {\"read_only\": [\"/usr/../etc\"]}}");
    assert_load_fails(f, "manifests/echo.json: /sandbox/read_only/0: expected an absolute path "
                         "without . or .. components");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"pool\": {\"min_idle\": 65}}");
    assert_load_fails(f,
                      "manifests/echo.json: /pool/min_idle: must not exceed max_per_tenant (64)");
    /* keys that mean nothing where they are given are refused, not accepted and ignored */
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"pool\": {\"max_calls\": 10}}");
    assert_load_fails(f, "manifests/echo.json: /pool/max_calls: applies to children shared by "
                         "sessions (isolation \"tenant\" or \"shared\"); a session's own child "
                         "lives as long as its session: leave it out");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"isolation\": \"tenant\", \"reads_principal_meta\": true}");
    assert_load_fails(f, "manifests/echo.json: /reads_principal_meta: only means something with "
                         "isolation \"shared\" (mcpvisor adds the principal to requests only "
                         "then): leave it out");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"isolation\": \"shared\", \"secrets\": {\"T\": \"t\"}}");
    assert_load_fails(f, "manifests/echo.json: /secrets: cannot be used with isolation "
                         "\"shared\": one child serves every tenant, so no tenant's secrets_dir "
                         "applies; use \"tenant\" isolation or \"env\"");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"isolation\": \"pooled\"}");
    assert_load_fails(f, "manifests/echo.json: /isolation: expected \"session\", \"tenant\" "
                         "or \"shared\"");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"tools\": {\"t\": {\"cache_ttl_s\": 5}}}");
    assert_load_fails(f, "manifests/echo.json: /tools/t/cache_ttl_s: result caching is not "
                         "supported yet: use 0 or leave it out");
}

static void manifest_name_must_match_its_file(void **state)
{
    struct fixture *f = *state;

    write_file("mcpvisor.json", "{}");
    write_file("manifests/echo.json", "{\"name\": \"cat\", \"command\": [\"/bin/cat\"]}");
    assert_load_fails(f, "manifests/echo.json: /name: \"cat\" does not match the file name "
                         "(expected \"echo\")");
}

static void listener_addresses_are_numeric(void **state)
{
    struct fixture *f = *state;
    struct config *cfg;

    write_echo();
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"localhost:8080\"}]}");
    assert_load_fails(f, "mcpvisor.json: /listen/0/address: expected \"IPv4:port\" or "
                         "\"[IPv6]:port\" with a numeric host");
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"::1:8080\"}]}");
    assert_load_fails(f, "mcpvisor.json: /listen/0/address: expected \"IPv4:port\" or "
                         "\"[IPv6]:port\" with a numeric host");
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"127.0.0.1:65536\"}]}");
    assert_load_fails(f, "mcpvisor.json: /listen/0/address: port must be from 0 to 65535");
    write_file("mcpvisor.json", "{\"listen\": []}");
    assert_load_fails(f, "mcpvisor.json: /listen: expected 1 to 16 listeners");
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"127.0.0.1:80\"}, "
                                "{\"address\": \"127.0.0.1:80\"}]}");
    assert_load_fails(f, "mcpvisor.json: /listen/1/address: same address as /listen/0");

    /* TLS files are read at load time (the front cannot read them); their PEM is checked at
     * start-up, not here. */
    write_file("tls/c.pem", "cert");
    write_file("tls/k.pem", "key");
    write_file("mcpvisor.json",
               "{\"listen\": [{\"address\": \"[::1]:0\"}, {\"address\": \"127.9.9.9:0\"}, "
               "{\"address\": \"[2001:db8::1]:443\", \"admin\": true}, "
               "{\"address\": \"0.0.0.0:8443\", \"tls\": {\"cert\": \"tls/c.pem\", "
               "\"key\": \"tls/k.pem\"}}]}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_int_equal(cfg->nlisteners, 4);
    assert_string_equal(cfg->listeners[0].host, "::1");
    assert_int_equal(cfg->listeners[0].port, 0);
    assert_true(cfg->listeners[0].loopback);
    assert_true(cfg->listeners[1].loopback);
    assert_string_equal(cfg->listeners[2].host, "2001:db8::1");
    assert_int_equal(cfg->listeners[2].port, 443);
    assert_false(cfg->listeners[2].loopback);
    assert_true(cfg->listeners[2].admin);
    assert_false(cfg->listeners[3].loopback);
    assert_string_equal(cfg->listeners[3].address, "0.0.0.0:8443");
    assert_string_equal(cfg->listeners[3].tls_key + strlen(f->dir), "/tls/k.pem");
    assert_string_equal(cfg->listeners[3].tls_key_pem, "key");
    assert_string_equal(cfg->listeners[3].tls_cert_pem, "cert");
    assert_string_equal(cfg->listeners[3].tls_cert + strlen(f->dir), "/tls/c.pem");
    assert_memory_equal(cfg->listeners[3].tls_cert, f->dir, strlen(f->dir));
    config_free(cfg);
}

/* ---- paths -------------------------------------------------------------------------------- */

static void relative_command_resolves_to_absolute(void **state)
{
    struct fixture *f = *state;
    char expected[PATH_MAX];
    struct config *cfg;

    write_file("mcpvisor.json", "{\"manifests_dir\": \"./conf/../servers/\", "
                                "\"audit\": {\"path\": \"log//audit.jsonl\"}}");
    write_file("servers/echo.json",
               "{\"name\": \"echo\", \"command\": [\"bin/../bin/./server\", \"--flag\", \"\"]}");
    cfg = load(f);
    assert_non_null(cfg);
    snprintf(expected, sizeof expected, "%s/mcpvisor.json", f->dir);
    assert_string_equal(cfg->path, expected);
    assert_string_equal(cfg->dir, f->dir);
    snprintf(expected, sizeof expected, "%s/servers", f->dir);
    assert_string_equal(cfg->manifests_dir, expected);
    snprintf(expected, sizeof expected, "%s/log/audit.jsonl", f->dir);
    assert_string_equal(cfg->audit_path, expected);
    assert_int_equal(cfg->nmanifests, 1);
    assert_string_equal(cfg->manifests[0].file, "servers/echo.json");
    assert_int_equal(cfg->manifests[0].argc, 3);
    snprintf(expected, sizeof expected, "%s/bin/server", f->dir);
    assert_string_equal(cfg->manifests[0].argv[0], expected);
    assert_string_equal(cfg->manifests[0].argv[1], "--flag");
    assert_string_equal(cfg->manifests[0].argv[2], "");
    assert_null(cfg->manifests[0].argv[3]);
    config_free(cfg);

    /* ".." never climbs above the root. */
    write_file("servers/echo.json", "{\"name\": \"echo\", \"command\": [\"/../../usr/bin/env\"]}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_string_equal(cfg->manifests[0].argv[0], "/usr/bin/env");
    config_free(cfg);
}

static void missing_manifests_dir_is_an_error(void **state)
{
    struct fixture *f = *state;
    char expected[PATH_MAX];

    write_file("mcpvisor.json", "{}");
    snprintf(expected, sizeof expected,
             "mcpvisor.json: /manifests_dir: cannot list %s/manifests: No such file or directory",
             f->dir);
    assert_load_fails(f, expected);
}

/* ---- cross references --------------------------------------------------------------------- */

static void tenant_naming_unknown_server_is_an_error(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"servers\": [\"echo\", \"nope\"]}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/acme/servers/1: unknown server \"nope\"");

    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"secrets\": {\"TOKEN\": \"token\"}}");
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"servers\": [\"echo\"]}}}");
    assert_load_fails(f, "mcpvisor.json: /tenants/acme/servers/0: server \"echo\" needs secrets "
                         "but the tenant has no secrets_dir");
}

static void write_keys_config(const char *keys)
{
    write_echo();
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"servers\": [\"echo\"]}}, "
                                "\"auth\": {\"api_keys_file\": \"keys/api-keys.json\"}}");
    write_file("keys/api-keys.json", keys);
}

static void api_key_with_unknown_tenant_is_an_error(void **state)
{
    struct fixture *f = *state;
    char keys[512];

    snprintf(keys, sizeof keys,
             "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"nobody\", \"user\": \"alice\"}]}",
             HASH_A);
    write_keys_config(keys);
    assert_load_fails(f, "keys/api-keys.json: /keys/0/tenant: unknown tenant \"nobody\"");
}

static void api_key_with_bad_hex_is_an_error(void **state)
{
    struct fixture *f = *state;
    char keys[512];

    snprintf(keys, sizeof keys,
             "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"a\"}, "
             "{\"sha256\": \"%.63sg\", \"tenant\": \"acme\", \"user\": \"b\"}]}",
             HASH_A, HASH_B);
    write_keys_config(keys);
    assert_load_fails(f, "keys/api-keys.json: /keys/1/sha256: expected 64 hex digits");

    snprintf(keys, sizeof keys,
             "{\"keys\": [{\"sha256\": \"%.62s\", \"tenant\": \"acme\", \"user\": \"a\"}]}",
             HASH_A);
    write_keys_config(keys);
    assert_load_fails(f, "keys/api-keys.json: /keys/0/sha256: expected 64 hex digits");
}

static void api_keys_are_decoded_and_duplicates_refused(void **state)
{
    struct fixture *f = *state;
    static const uint8_t b[32] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
                                  0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
                                  0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    char keys[1024];
    struct config *cfg;

    snprintf(keys, sizeof keys,
             "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"alice\", "
             "\"agent\": \"ci-bot\", \"scopes\": [\"invoices:read\", \"x\"]}, "
             "{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"bob\"}]}",
             HASH_A, HASH_B);
    write_keys_config(keys);
    cfg = load(f);
    assert_non_null(cfg);
    assert_int_equal(cfg->napi_keys, 2);
    assert_memory_equal(cfg->api_keys[1].sha256, b, 32);
    assert_int_equal(cfg->api_keys[0].sha256[31], 0xaa);
    assert_string_equal(cfg->api_keys[0].principal.tenant, "acme");
    assert_string_equal(cfg->api_keys[0].principal.user, "alice");
    assert_string_equal(cfg->api_keys[0].principal.agent, "ci-bot");
    assert_int_equal(cfg->api_keys[0].principal.nscopes, 2);
    assert_string_equal(cfg->api_keys[0].principal.scopes[0], "invoices:read");
    assert_null(cfg->api_keys[1].principal.agent);
    assert_int_equal(cfg->api_keys[1].principal.nscopes, 0);
    config_free(cfg);

    /* Same hash in another case is the same key. */
    snprintf(keys, sizeof keys,
             "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"a\"}, "
             "{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"b\"}, "
             "{\"sha256\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", "
             "\"tenant\": \"acme\", \"user\": \"c\"}]}",
             HASH_A, HASH_B);
    write_keys_config(keys);
    assert_load_fails(f, "keys/api-keys.json: /keys/2/sha256: same key as /keys/0");

    snprintf(keys, sizeof keys, "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"acme\"}]}", HASH_A);
    write_keys_config(keys);
    assert_load_fails(f, "keys/api-keys.json: /keys/0/user: is required");
}

static void anonymous_needs_every_listener_on_loopback(void **state)
{
    struct fixture *f = *state;
    struct config *cfg;

    write_echo();
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"127.0.0.1:0\"}, "
                                "{\"address\": \"0.0.0.0:8443\"}], \"tenants\": {\"acme\": {}}, "
                                "\"auth\": {\"anonymous\": {\"tenant\": \"acme\"}}}");
    assert_load_fails(
        f, "mcpvisor.json: /auth/anonymous: allowed only when every listener is on loopback");

    /* The default listener is loopback. */
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {}}, "
                                "\"auth\": {\"anonymous\": {\"tenant\": \"acme\"}}}");
    cfg = load(f);
    assert_non_null(cfg);
    config_free(cfg);

    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"[::1]:0\"}], "
                                "\"tenants\": {\"acme\": {}}, \"auth\": {\"anonymous\": "
                                "{\"tenant\": \"acme\", \"scopes\": [\"echo:call\"]}}}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_true(cfg->has_anonymous);
    assert_string_equal(cfg->anonymous.tenant, "acme");
    assert_string_equal(cfg->anonymous.user, "anonymous");
    assert_null(cfg->anonymous.agent);
    assert_int_equal(cfg->anonymous.nscopes, 1);
    config_free(cfg);

    write_file("mcpvisor.json", "{\"auth\": {\"anonymous\": {\"tenant\": \"ghost\"}}}");
    assert_load_fails(f, "mcpvisor.json: /auth/anonymous/tenant: unknown tenant \"ghost\"");

    /* null is the same as leaving it out. */
    write_file("mcpvisor.json", "{\"listen\": [{\"address\": \"0.0.0.0:0\"}], "
                                "\"auth\": {\"anonymous\": null}}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_false(cfg->has_anonymous);
    config_free(cfg);
}

/* ---- defaults ----------------------------------------------------------------------------- */

static void defaults_are_filled_in(void **state)
{
    struct fixture *f = *state;
    const struct config_manifest *m;
    const struct config_tool *t;
    char expected[PATH_MAX];
    struct config *cfg;

    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"servers\": [\"echo\"]}}}");
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], "
                                      "\"tools\": {\"echo\": {}}}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_string_equal(cfg->user, "mcpvisor");
    assert_int_equal(cfg->nlisteners, 1);
    assert_string_equal(cfg->listeners[0].address, "127.0.0.1:8080");
    assert_string_equal(cfg->listeners[0].host, "127.0.0.1");
    assert_int_equal(cfg->listeners[0].port, 8080);
    assert_true(cfg->listeners[0].loopback);
    assert_false(cfg->listeners[0].admin);
    assert_null(cfg->listeners[0].tls_cert);
    assert_null(cfg->public_url);
    assert_int_equal(cfg->nallowed_origins, 0);
    assert_int_equal(cfg->nallowed_hosts, 0);
    snprintf(expected, sizeof expected, "%s/manifests", f->dir);
    assert_string_equal(cfg->manifests_dir, expected);
    assert_null(cfg->api_keys_file);
    assert_int_equal(cfg->napi_keys, 0);
    assert_false(cfg->has_anonymous);
    assert_false(cfg->has_jwt);
    assert_null(cfg->audit_path);
    assert_int_equal(cfg->audit_sync, CONFIG_AUDIT_SYNC_ALWAYS);

    assert_int_equal(cfg->limits.max_body_bytes, 1 << 20);
    assert_int_equal(cfg->limits.max_header_bytes, 16 << 10);
    assert_int_equal(cfg->limits.max_connections, 1024);
    assert_int_equal(cfg->limits.max_sessions, 10000);
    assert_int_equal(cfg->limits.session_idle_s, 900);
    assert_int_equal(cfg->limits.max_line_bytes, 4 << 20);
    assert_int_equal(cfg->limits.request_timeout_ms, 60000);
    assert_int_equal(cfg->limits.max_pending_per_session, 64);
    assert_int_equal(cfg->limits.max_child_write_bytes, 8 << 20);
    assert_int_equal(cfg->limits.sse_replay_events, 256);
    assert_int_equal(cfg->limits.stderr_lines_per_s, 50);
    assert_int_equal(cfg->limits.spawn_timeout_ms, 10000);

    assert_int_equal(cfg->ntenants, 1);
    assert_string_equal(cfg->tenants[0].name, "acme");
    assert_false(cfg->tenants[0].has_ids);
    assert_true(cfg->tenants[0].quota_scale == 1.0);
    assert_null(cfg->tenants[0].secrets_dir);
    assert_true(config_tenant_allows(config_tenant_find(cfg, "acme"), "echo"));
    assert_false(config_tenant_allows(config_tenant_find(cfg, "acme"), "other"));
    assert_null(config_tenant_find(cfg, "other"));

    m = config_manifest_find(cfg, "echo");
    assert_non_null(m);
    assert_string_equal(m->file, "manifests/echo.json");
    assert_null(m->version);
    assert_int_equal(m->argc, 1);
    assert_string_equal(m->argv[0], "/bin/cat");
    assert_null(m->argv[1]);
    assert_int_equal(m->nenv, 0);
    assert_int_equal(m->nsecrets, 0);
    assert_int_equal(m->isolation, CONFIG_ISOLATION_SESSION);
    assert_int_equal(m->pool_min_idle, 0);
    assert_int_equal(m->pool_max_per_tenant, 64);
    assert_int_equal(m->pool_idle_timeout_s, 300);
    assert_int_equal(m->pool_sessions_per_child, 100);
    assert_int_equal(m->pool_max_calls, 0);
    assert_int_equal(m->pool_max_age_s, 0);
    assert_false(m->reads_principal_meta);
    assert_int_equal(cfg->limits.max_children, 10000);
    assert_false(m->sandbox.network);
    assert_int_equal(m->sandbox.nread_only, 0);
    assert_int_equal(m->sandbox.memory_mb, 0);
    assert_int_equal(m->sandbox.address_space_mb, 0);
    assert_int_equal(m->sandbox.seccomp_action, CONFIG_SECCOMP_KILL);
    assert_int_equal(m->pin_mode, CONFIG_PIN_ENFORCE);
    assert_true(m->unlisted_tools_allow);
    t = config_tool_find(m, "echo");
    assert_non_null(t);
    assert_null(t->version);
    assert_null(t->sha256);
    assert_int_equal(t->nscopes, 0);
    assert_false(t->quota.has_rate);
    assert_int_equal(t->quota.burst, 0);
    assert_int_equal(t->quota.concurrency, 0);
    assert_int_equal(t->quota.timeout_ms, 0);
    assert_int_equal(t->quota.max_args_bytes, 0);
    assert_int_equal(t->quota.max_result_bytes, 0);
    assert_int_equal(t->cache_ttl_s, 0);
    assert_null(config_tool_find(m, "other"));
    config_free(cfg);

    write_file("jwks.json", "{\"keys\": []}");
    write_file("mcpvisor.json", "{\"auth\": {\"jwt\": {\"issuer\": \"https://idp.example.com\", "
                                "\"audience\": \"https://mcp.example.com\", "
                                "\"jwks_file\": \"jwks.json\"}}}");
    cfg = load(f);
    assert_non_null(cfg);
    assert_true(cfg->has_jwt);
    assert_int_equal(cfg->jwt_leeway_s, 60);
    assert_string_equal(cfg->jwt_claim_tenant, "tenant");
    assert_string_equal(cfg->jwt_claim_agent, "azp");
    assert_null(cfg->jwt_jwks_url);
    snprintf(expected, sizeof expected, "%s/jwks.json", f->dir);
    assert_string_equal(cfg->jwt_jwks_file, expected);
    assert_int_equal(cfg->njwt_authorization_servers, 1);
    assert_string_equal(cfg->jwt_authorization_servers[0], "https://idp.example.com");
    config_free(cfg);
}

/* ---- size ceiling ------------------------------------------------------------------------- */

static void pool_keys_are_parsed(void **state)
{
    struct fixture *f = *state;
    write_file("mcpvisor.json", "{\"tenants\": {\"acme\": {\"servers\": [\"echo\"]}}}");
    write_file("manifests/echo.json",
               "{\"name\": \"echo\", \"command\": [\"/bin/cat\"], \"isolation\": \"shared\", "
               "\"reads_principal_meta\": true, \"pool\": {\"min_idle\": 2, \"max_per_tenant\": 3, "
               "\"idle_timeout_s\": 7, \"sessions_per_child\": 5, \"max_calls\": 1000, "
               "\"max_age_s\": 3600}}");
    struct config *cfg = load(f);
    assert_non_null(cfg);
    const struct config_manifest *m = config_manifest_find(cfg, "echo");
    assert_int_equal(m->isolation, CONFIG_ISOLATION_SHARED);
    assert_true(m->reads_principal_meta);
    assert_int_equal(m->pool_min_idle, 2);
    assert_int_equal(m->pool_max_per_tenant, 3);
    assert_int_equal(m->pool_idle_timeout_s, 7);
    assert_int_equal(m->pool_sessions_per_child, 5);
    assert_int_equal(m->pool_max_calls, 1000);
    assert_int_equal(m->pool_max_age_s, 3600);
    config_free(cfg);
}

static void oversized_file_is_refused(void **state)
{
    struct fixture *f = *state;
    size_t n = CONFIG_MAX_FILE_BYTES + 1;
    char *big = malloc(n);
    struct config *cfg;

    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[1] = '}';
    write_echo();
    write_bytes("mcpvisor.json", big, n);
    assert_load_fails(f, "mcpvisor.json: larger than 4194304 bytes, the limit for a "
                         "configuration file");

    /* Exactly at the ceiling is fine. */
    write_bytes("mcpvisor.json", big, n - 1);
    cfg = load(f);
    assert_non_null(cfg);
    config_free(cfg);

    write_file("mcpvisor.json", "{}");
    memcpy(big, ECHO_MANIFEST, strlen(ECHO_MANIFEST));
    write_bytes("manifests/echo.json", big, n);
    assert_load_fails(f, "manifests/echo.json: larger than 4194304 bytes, the limit for a "
                         "configuration file");
    free(big);
}

/* ---- the filesystem source ---------------------------------------------------------------- */

static void fs_list_returns_sorted_json_files(void **state)
{
    char **names = NULL;
    size_t n = 0;
    char *buf = NULL;
    size_t len = 0;

    (void)state;
    write_file("d/b.json", "{}");
    write_file("d/a-b.json", "{}");
    write_file("d/a.json", "{}");
    write_file("d/.hidden.json", "{}");
    write_file("d/notes.txt", "");
    write_file("d/.json", "");
    assert_int_equal(mkdir("d/dir.json", 0755), 0);
    assert_int_equal(config_source_fs.list(config_source_fs.ctx, "d", &names, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "a-b.json");
    assert_string_equal(names[1], "a.json");
    assert_string_equal(names[2], "b.json");
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);

    assert_int_equal(config_source_fs.read(config_source_fs.ctx, "d/dir.json", &buf, &len), -1);
    assert_int_equal(errno, EISDIR);
    assert_int_equal(config_source_fs.read(config_source_fs.ctx, "d/none.json", &buf, &len), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(config_source_fs.read(config_source_fs.ctx, "d/a.json", &buf, &len), 0);
    assert_int_equal(len, 2);
    assert_string_equal(buf, "{}");
    free(buf);
}

/* ---- bundles ------------------------------------------------------------------------------ */

static void assert_strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        assert_string_equal(a[i], b[i]);
}

static void assert_str_or_null_equal(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_principal_equal(const struct config_principal *a,
                                   const struct config_principal *b)
{
    assert_str_or_null_equal(a->tenant, b->tenant);
    assert_str_or_null_equal(a->user, b->user);
    assert_str_or_null_equal(a->agent, b->agent);
    assert_strv_equal(a->scopes, a->nscopes, b->scopes, b->nscopes);
}

static void assert_env_equal(const struct config_env *a, size_t na, const struct config_env *b,
                             size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(a[i].name, b[i].name);
        assert_string_equal(a[i].value, b[i].value);
    }
}

static void assert_manifest_equal(const struct config_manifest *a, const struct config_manifest *b)
{
    const struct config_sandbox *x = &a->sandbox, *y = &b->sandbox;

    assert_string_equal(a->file, b->file);
    assert_string_equal(a->name, b->name);
    assert_str_or_null_equal(a->version, b->version);
    assert_strv_equal(a->argv, a->argc, b->argv, b->argc);
    assert_null(b->argv[b->argc]);
    assert_env_equal(a->env, a->nenv, b->env, b->nenv);
    assert_env_equal(a->secrets, a->nsecrets, b->secrets, b->nsecrets);
    assert_int_equal(a->isolation, b->isolation);
    assert_int_equal(a->pool_min_idle, b->pool_min_idle);
    assert_int_equal(a->pool_max_per_tenant, b->pool_max_per_tenant);
    assert_int_equal(a->pool_idle_timeout_s, b->pool_idle_timeout_s);
    assert_int_equal(a->pool_sessions_per_child, b->pool_sessions_per_child);
    assert_int_equal(a->pool_max_calls, b->pool_max_calls);
    assert_int_equal(a->pool_max_age_s, b->pool_max_age_s);
    assert_int_equal(a->reads_principal_meta, b->reads_principal_meta);
    assert_int_equal(x->network, y->network);
    assert_strv_equal(x->read_only, x->nread_only, y->read_only, y->nread_only);
    assert_strv_equal(x->read_write, x->nread_write, y->read_write, y->nread_write);
    assert_strv_equal(x->tmpfs, x->ntmpfs, y->tmpfs, y->ntmpfs);
    assert_int_equal(x->memory_mb, y->memory_mb);
    assert_int_equal(x->cpu_s, y->cpu_s);
    assert_int_equal(x->nofile, y->nofile);
    assert_int_equal(x->nproc, y->nproc);
    assert_int_equal(x->address_space_mb, y->address_space_mb);
    assert_int_equal(x->seccomp_action, y->seccomp_action);
    assert_strv_equal(x->seccomp_deny, x->nseccomp_deny, y->seccomp_deny, y->nseccomp_deny);
    assert_strv_equal(x->seccomp_allow, x->nseccomp_allow, y->seccomp_allow, y->nseccomp_allow);
    assert_int_equal(a->pin_mode, b->pin_mode);
    assert_int_equal(a->unlisted_tools_allow, b->unlisted_tools_allow);
    assert_int_equal(a->ntools, b->ntools);
    for (size_t i = 0; i < a->ntools; i++) {
        const struct config_tool *s = &a->tools[i], *t = &b->tools[i];

        assert_string_equal(s->name, t->name);
        assert_str_or_null_equal(s->version, t->version);
        assert_str_or_null_equal(s->sha256, t->sha256);
        assert_strv_equal(s->scopes, s->nscopes, t->scopes, t->nscopes);
        assert_int_equal(s->quota.has_rate, t->quota.has_rate);
        assert_true(s->quota.rate_per_s == t->quota.rate_per_s);
        assert_int_equal(s->quota.burst, t->quota.burst);
        assert_int_equal(s->quota.concurrency, t->quota.concurrency);
        assert_int_equal(s->quota.timeout_ms, t->quota.timeout_ms);
        assert_int_equal(s->quota.max_args_bytes, t->quota.max_args_bytes);
        assert_int_equal(s->quota.max_result_bytes, t->quota.max_result_bytes);
        assert_int_equal(s->cache_ttl_s, t->cache_ttl_s);
    }
}

static void assert_config_equal(const struct config *a, const struct config *b)
{
    assert_string_equal(a->path, b->path);
    assert_string_equal(a->dir, b->dir);
    assert_string_equal(a->user, b->user);
    assert_int_equal(a->nlisteners, b->nlisteners);
    for (size_t i = 0; i < a->nlisteners; i++) {
        const struct config_listener *x = &a->listeners[i], *y = &b->listeners[i];

        assert_string_equal(x->address, y->address);
        assert_string_equal(x->host, y->host);
        assert_int_equal(x->port, y->port);
        assert_int_equal(x->admin, y->admin);
        assert_int_equal(x->loopback, y->loopback);
        assert_str_or_null_equal(x->tls_cert, y->tls_cert);
        assert_str_or_null_equal(x->tls_key, y->tls_key);
    }
    assert_str_or_null_equal(a->public_url, b->public_url);
    assert_strv_equal(a->allowed_origins, a->nallowed_origins, b->allowed_origins,
                      b->nallowed_origins);
    assert_strv_equal(a->allowed_hosts, a->nallowed_hosts, b->allowed_hosts, b->nallowed_hosts);
    assert_string_equal(a->manifests_dir, b->manifests_dir);
    assert_str_or_null_equal(a->api_keys_file, b->api_keys_file);
    assert_int_equal(a->napi_keys, b->napi_keys);
    for (size_t i = 0; i < a->napi_keys; i++) {
        assert_memory_equal(a->api_keys[i].sha256, b->api_keys[i].sha256, 32);
        assert_principal_equal(&a->api_keys[i].principal, &b->api_keys[i].principal);
    }
    assert_int_equal(a->has_anonymous, b->has_anonymous);
    assert_principal_equal(&a->anonymous, &b->anonymous);
    assert_int_equal(a->has_jwt, b->has_jwt);
    assert_str_or_null_equal(a->jwt_issuer, b->jwt_issuer);
    assert_str_or_null_equal(a->jwt_audience, b->jwt_audience);
    assert_str_or_null_equal(a->jwt_jwks_url, b->jwt_jwks_url);
    assert_str_or_null_equal(a->jwt_jwks_file, b->jwt_jwks_file);
    assert_strv_equal(a->jwt_authorization_servers, a->njwt_authorization_servers,
                      b->jwt_authorization_servers, b->njwt_authorization_servers);
    assert_str_or_null_equal(a->jwt_claim_tenant, b->jwt_claim_tenant);
    assert_str_or_null_equal(a->jwt_claim_agent, b->jwt_claim_agent);
    assert_int_equal(a->jwt_leeway_s, b->jwt_leeway_s);
    assert_int_equal(a->ntenants, b->ntenants);
    for (size_t i = 0; i < a->ntenants; i++) {
        const struct config_tenant *x = &a->tenants[i], *y = &b->tenants[i];

        assert_string_equal(x->name, y->name);
        assert_int_equal(x->has_ids, y->has_ids);
        assert_int_equal(x->uid, y->uid);
        assert_int_equal(x->gid, y->gid);
        assert_strv_equal(x->servers, x->nservers, y->servers, y->nservers);
        assert_true(x->quota_scale == y->quota_scale);
        assert_str_or_null_equal(x->secrets_dir, y->secrets_dir);
    }
    assert_str_or_null_equal(a->audit_path, b->audit_path);
    assert_int_equal(a->audit_sync, b->audit_sync);
    assert_memory_equal(&a->limits, &b->limits, sizeof a->limits);
    assert_int_equal(a->nmanifests, b->nmanifests);
    for (size_t i = 0; i < a->nmanifests; i++)
        assert_manifest_equal(&a->manifests[i], &b->manifests[i]);
}

/* DESIGN.md's complete example, with every optional section present. */
static void write_full_config(void)
{
    write_file("tls/cert.pem", "cert");
    write_file("tls/key.pem", "key");
    char text[4096];

    write_file("mcpvisor.json",
               "{\n"
               "  \"listen\": [\n"
               "    {\"address\": \"127.0.0.1:8080\"},\n"
               "    {\"address\": \"0.0.0.0:8443\", \"tls\": {\"cert\": \"tls/cert.pem\", "
               "\"key\": \"tls/key.pem\"}},\n"
               "    {\"address\": \"127.0.0.1:9090\", \"admin\": true}\n"
               "  ],\n"
               "  \"public_url\": \"https://mcp.example.com\",\n"
               "  \"allowed_origins\": [\"https://app.example.com\"],\n"
               "  \"allowed_hosts\": [\"mcp.internal:8443\"],\n"
               "  \"user\": \"mcpvisor\",\n"
               "  \"manifests_dir\": \"manifests\",\n"
               "  \"auth\": {\n"
               "    \"jwt\": {\n"
               "      \"issuer\": \"https://idp.example.com\",\n"
               "      \"audience\": \"https://mcp.example.com\",\n"
               "      \"jwks_url\": \"https://idp.example.com/.well-known/jwks.json\",\n"
               "      \"authorization_servers\": [\"https://idp.example.com\"],\n"
               "      \"claims\": {\"tenant\": \"org\", \"agent\": \"client_id\"},\n"
               "      \"leeway_s\": 30\n"
               "    },\n"
               "    \"api_keys_file\": \"api-keys.json\",\n"
               "    \"anonymous\": null\n"
               "  },\n"
               "  \"tenants\": {\n"
               "    \"acme\": {\"uid\": 61001, \"gid\": 61001, \"servers\": [\"invoices\", "
               "\"echo\"], \"secrets_dir\": \"secrets/acme\"},\n"
               "    \"globex\": {\"uid\": 61002, \"gid\": 61002, \"servers\": [\"echo\"], "
               "\"quota_scale\": 0.5}\n"
               "  },\n"
               "  \"audit\": {\"path\": \"/var/log/mcpvisor/audit.jsonl\", \"sync\": \"batch\"},\n"
               "  \"limits\": {\"max_body_bytes\": 1048576, \"max_sessions\": 10000, "
               "\"session_idle_s\": 900,\n"
               "             \"max_line_bytes\": 4194304, \"request_timeout_ms\": 60000, "
               "\"sse_replay_events\": 0}\n"
               "}\n");
    snprintf(text, sizeof text,
             "{\n"
             "  \"name\": \"invoices\",\n"
             "  \"version\": \"3\",\n"
             "  \"command\": [\"/usr/bin/node\", \"/opt/invoices/server.js\"],\n"
             "  \"env\": {\"LOG_LEVEL\": \"info\", \"EMPTY\": \"\"},\n"
             "  \"secrets\": {\"INVOICE_API_TOKEN\": \"invoices.token\"},\n"
             "  \"isolation\": \"session\",\n"
             "  \"pool\": {\"max_per_tenant\": 4},\n"
             "  \"sandbox\": {\n"
             "    \"network\": \"none\",\n"
             "    \"read_only\": [\"/usr\", \"/lib\", \"/opt/invoices/\"], \"read_write\": [], "
             "\"tmpfs\": [\"/tmp\"],\n"
             "    \"limits\": {\"memory_mb\": 512, \"cpu_s\": 60, \"nofile\": 256, \"nproc\": 64, "
             "\"address_space_mb\": null},\n"
             "    \"seccomp\": {\"action\": \"errno\", \"deny\": [\"ptrace\"], \"allow\": "
             "[\"io_uring_setup\"]}\n"
             "  },\n"
             "  \"pin_mode\": \"warn\",\n"
             "  \"unlisted_tools\": \"allow\",\n"
             "  \"tools\": {\n"
             "    \"read_invoice\": {\n"
             "      \"version\": \"2\", \"sha256\": \"%s\", \"scopes\": [\"invoices:read\"],\n"
             "      \"quota\": {\"rate\": \"10/s\", \"burst\": 20, \"concurrency\": 4, "
             "\"timeout_ms\": 10000,\n"
             "                \"max_args_bytes\": 65536, \"max_result_bytes\": 1048576},\n"
             "      \"cache_ttl_s\": 0\n"
             "    },\n"
             "    \"list_invoices\": {\"quota\": {\"rate\": \"6/min\"}}\n"
             "  }\n"
             "}\n",
             HASH_B);
    write_file("manifests/invoices.json", text);
    write_file("manifests/echo.json", "{\"name\": \"echo\", \"command\": [\"bin/echo-server\"], "
                                      "\"sandbox\": {\"network\": \"host\"}}");
    snprintf(text, sizeof text,
             "{\"keys\": [{\"sha256\": \"%s\", \"tenant\": \"acme\", \"user\": \"alice\", "
             "\"agent\": \"ci-bot\", \"scopes\": [\"invoices:read\"]}]}",
             HASH_A);
    write_file("api-keys.json", text);
}

static void bundle_round_trip_gives_an_identical_config(void **state)
{
    struct fixture *f = *state;
    struct config_source src;
    struct config *direct, *bundled;
    char *bundle, *again, *path = NULL, *buf = NULL, **names = NULL;
    size_t len, len2, n;

    write_full_config();
    direct = load(f);
    assert_non_null(direct);
    assert_int_equal(direct->nmanifests, 2);
    assert_string_equal(direct->manifests[1].sandbox.read_only[2], "/opt/invoices");
    assert_true(direct->manifests[1].tools[1].quota.rate_per_s == 0.1);

    bundle = config_bundle_build(&config_source_fs, "mcpvisor.json", &len, f->err, sizeof f->err);
    assert_non_null(bundle);
    assert_int_equal(len, strlen(bundle));
    again = config_bundle_build(&config_source_fs, "mcpvisor.json", &len2, f->err, sizeof f->err);
    assert_non_null(again);
    assert_string_equal(bundle, again);
    free(again);

    /* The files are gone: everything must come from the bundle. */
    rm_rf(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);

    assert_int_equal(config_bundle_source(bundle, len, &src, &path, f->err, sizeof f->err), 0);
    assert_string_equal(path, direct->path);
    bundled = config_load(&src, path, f->err, sizeof f->err);
    assert_non_null(bundled);
    assert_config_equal(direct, bundled);

    /* Nothing else is served. */
    assert_int_equal(src.read(src.ctx, "/etc/passwd", &buf, &len2), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(src.list(src.ctx, "/etc", &names, &n), -1);
    assert_int_equal(errno, ENOENT);

    config_free(bundled);
    config_bundle_source_free(&src);
    free(path);
    free(bundle);
    config_free(direct);
}

static void bundle_build_reports_the_load_error(void **state)
{
    struct fixture *f = *state;
    struct config_source src;
    size_t len = 1;
    char *bundle;

    write_echo();
    write_file("mcpvisor.json", "{\"limitz\": {}}");
    bundle = config_bundle_build(&config_source_fs, "mcpvisor.json", &len, f->err, sizeof f->err);
    assert_null(bundle);
    assert_int_equal(len, 0);
    assert_string_equal(f->err, "mcpvisor.json: /limitz: unknown key");

    assert_int_equal(config_bundle_source("{\"format\": 1}", 13, &src, NULL, f->err, sizeof f->err),
                     -1);
    assert_string_equal(f->err, "bundle: /format: expected a string");
    assert_int_equal(config_bundle_source("{", 1, &src, NULL, f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "bundle: invalid JSON");
}

/* ---- audit.batch_ms, limits.principal_rate and limits.principal_burst -------------------- */

/* Loads mcpvisor.json with `text` and the echo manifest; the caller frees. */
static struct config *load_text(struct fixture *f, const char *text)
{
    struct config *cfg;

    write_echo();
    write_file("mcpvisor.json", text);
    cfg = load(f);
    if (cfg == NULL)
        fail_msg("config_load: %s", f->err);
    return cfg;
}

static void audit_batch_ms_defaults_and_range(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_text(f, "{}");

    assert_int_equal(cfg->audit_batch_ms, 100);
    config_free(cfg);
    cfg = load_text(f, "{\"audit\": {\"sync\": \"batch\", \"batch_ms\": 250}}");
    assert_int_equal(cfg->audit_sync, CONFIG_AUDIT_SYNC_BATCH);
    assert_int_equal(cfg->audit_batch_ms, 250);
    config_free(cfg);

    write_file("mcpvisor.json", "{\"audit\": {\"batch_ms\": 0}}");
    assert_load_fails(f, "mcpvisor.json: /audit/batch_ms: expected an integer from 1 to 60000");
    write_file("mcpvisor.json", "{\"audit\": {\"batch_ms\": 60001}}");
    assert_load_fails(f, "mcpvisor.json: /audit/batch_ms: expected an integer from 1 to 60000");
    write_file("mcpvisor.json", "{\"audit\": {\"batch_ms\": \"100\"}}");
    assert_load_fails(f, "mcpvisor.json: /audit/batch_ms: expected an integer from 1 to 60000");
}

/* ---- public_url and allowed_hosts ---------------------------------------------------------- */

static void public_url_and_allowed_hosts_are_kept(void **state)
{
    struct fixture *f = *state;
    static const char *const good[] = {
        "https://mcp.example.com",
        "http://mcp.example.com/",
        "https://mcp.example.com:8443",
        "https://mcp.example.com/base/path",
        "http://[::1]:8080",
        "https://10.0.0.5/a-b_c.d~e%20f",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"public_url\": \"%s\"}", good[i]);
        struct config *cfg = load_text(f, text);
        assert_string_equal(cfg->public_url, good[i]);
        config_free(cfg);
    }
    struct config *cfg =
        load_text(f, "{\"allowed_hosts\": [\"mcp.internal\", \"mcp.internal:8443\", "
                     "\"10.0.0.5\", \"[::1]:8080\", \"[fe80::1]\"]}");
    assert_int_equal(cfg->nallowed_hosts, 5);
    assert_string_equal(cfg->allowed_hosts[1], "mcp.internal:8443");
    assert_string_equal(cfg->allowed_hosts[3], "[::1]:8080");
    config_free(cfg);
}

static void principal_rate_is_off_unless_given(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_text(f, "{\"limits\": {\"max_sessions\": 5}}");

    assert_true(cfg->limits.principal_rate_per_s == 0);
    assert_int_equal(cfg->limits.principal_burst, 0);
    assert_int_equal(cfg->limits.max_sessions, 5);
    config_free(cfg);
    cfg = load_text(f, "{\"limits\": {\"principal_rate\": null}}");
    assert_true(cfg->limits.principal_rate_per_s == 0);
    config_free(cfg);
}

static void principal_rate_and_burst_are_parsed(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_text(f, "{\"limits\": {\"principal_rate\": \"10/s\"}}");

    assert_true(cfg->limits.principal_rate_per_s == 10.0);
    assert_int_equal(cfg->limits.principal_burst, 10); /* one second of the rate */
    config_free(cfg);
    cfg = load_text(f, "{\"limits\": {\"principal_rate\": \"30/min\"}}");
    assert_true(cfg->limits.principal_rate_per_s == 0.5);
    assert_int_equal(cfg->limits.principal_burst, 1); /* at least 1 */
    config_free(cfg);
    cfg = load_text(f, "{\"limits\": {\"principal_rate\": \"90/min\"}}");
    assert_int_equal(cfg->limits.principal_burst, 2); /* 1.5 rounded up */
    config_free(cfg);
    cfg = load_text(f, "{\"limits\": {\"principal_burst\": 25, \"principal_rate\": \"5/s\"}}");
    assert_true(cfg->limits.principal_rate_per_s == 5.0);
    assert_int_equal(cfg->limits.principal_burst, 25);
    config_free(cfg);
}

static void bad_principal_rate_and_burst_are_errors(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"limits\": {\"principal_rate\": \"10/hour\"}}");
    assert_load_fails(f, "mcpvisor.json: /limits/principal_rate: expected \"N/s\" or \"N/min\"");
    write_file("mcpvisor.json", "{\"limits\": {\"principal_rate\": 10}}");
    assert_load_fails(f, "mcpvisor.json: /limits/principal_rate: expected \"N/s\" or \"N/min\"");
    write_file("mcpvisor.json", "{\"limits\": {\"principal_rate\": \"2000000/s\"}}");
    assert_load_fails(f, "mcpvisor.json: /limits/principal_rate: rate must be at most 1000000/s");
    write_file("mcpvisor.json",
               "{\"limits\": {\"principal_rate\": \"10/s\", \"principal_burst\": 0}}");
    assert_load_fails(f, "mcpvisor.json: /limits/principal_burst: expected an integer from 1 to "
                         "1000000");
    write_file("mcpvisor.json", "{\"limits\": {\"principal_burst\": 5}}");
    assert_load_fails(f, "mcpvisor.json: /limits/principal_burst: needs /limits/principal_rate");
}

static void listing_budgets_must_hold_one_listing(void **state)
{
    struct fixture *f = *state;

    write_echo();
    write_file("mcpvisor.json", "{\"limits\": {\"max_listing_tools\": 20000}}");
    assert_load_fails(f, "mcpvisor.json: /limits/listing_tools_per_minute: must be at least "
                         "/limits/max_listing_tools (20000)");
    write_file("mcpvisor.json", "{\"limits\": {\"max_listing_schema_nodes\": 500000}}");
    assert_load_fails(f, "mcpvisor.json: /limits/listing_schema_nodes_per_minute: must be at "
                         "least /limits/max_listing_schema_nodes (500000)");
    write_file("mcpvisor.json", "{\"limits\": {\"listing_bytes_per_minute\": 1048576}}");
    assert_load_fails(f, "mcpvisor.json: /limits/listing_bytes_per_minute: must be at least "
                         "/limits/max_line_bytes (4194304)");
    write_file("mcpvisor.json", "{\"limits\": {\"max_schema_nodes_per_tenant\": 5000000}}");
    assert_load_fails(f, "mcpvisor.json: /limits/max_schema_nodes_per_tenant: needs "
                         "max_listing_schema_nodes <= max_schema_nodes_per_tenant <= "
                         "max_schema_nodes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(unknown_top_level_key_is_an_error),
        T(unknown_nested_key_is_an_error),
        T(unknown_manifest_key_is_an_error),
        T(duplicate_key_is_an_error),
        T(json_pointer_escapes_tilde_and_slash),
        T(syntax_error_names_line_and_column),
        T(bad_rate_is_an_error),
        T(wrong_types_and_ranges_are_errors),
        T(manifest_name_must_match_its_file),
        T(listener_addresses_are_numeric),
        T(relative_command_resolves_to_absolute),
        T(missing_manifests_dir_is_an_error),
        T(tenant_naming_unknown_server_is_an_error),
        T(api_key_with_unknown_tenant_is_an_error),
        T(api_key_with_bad_hex_is_an_error),
        T(api_keys_are_decoded_and_duplicates_refused),
        T(anonymous_needs_every_listener_on_loopback),
        T(defaults_are_filled_in),
        T(pool_keys_are_parsed),
        T(oversized_file_is_refused),
        T(fs_list_returns_sorted_json_files),
        T(bundle_round_trip_gives_an_identical_config),
        T(bundle_build_reports_the_load_error),
        T(audit_batch_ms_defaults_and_range),
        T(public_url_and_allowed_hosts_are_kept),
        T(principal_rate_is_off_unless_given),
        T(principal_rate_and_burst_are_parsed),
        T(bad_principal_rate_and_burst_are_errors),
        T(listing_budgets_must_hold_one_listing),
#undef T
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
