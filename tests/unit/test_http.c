/*
 * test_http.c — which Host values name this server (http_host_allowed): what a client sees is
 * whether its request is served or refused 421. A request reaches the address and port the
 * kernel reports for its connection; Host must name exactly that, a configured name, or
 * public_url's host, each with no port or the port it is served on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "http.h"

static bool allowed(const struct config *cfg, const char *host, const char *local, uint16_t port)
{
    return http_host_allowed(cfg, host, local, port);
}

static void the_address_reached_and_localhost(void **state)
{
    struct config cfg = {0};
    assert_true(allowed(&cfg, "127.0.0.1:8080", "127.0.0.1", 8080));
    assert_true(allowed(&cfg, "127.0.0.1", "127.0.0.1", 8080));
    assert_true(allowed(&cfg, "localhost:8080", "127.0.0.1", 8080));
    assert_true(allowed(&cfg, "LocalHost", "127.0.0.1", 8080));
    assert_true(allowed(&cfg, "[::1]:8080", "[::1]", 8080));
    assert_true(allowed(&cfg, "localhost:8080", "[::1]", 8080));
    assert_true(allowed(&cfg, "10.0.0.5:8443", "10.0.0.5", 8443));
    /* another port than the one reached */
    assert_false(allowed(&cfg, "127.0.0.1:1", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "localhost:8081", "127.0.0.1", 8080));
    /* another address, or localhost on a connection that did not arrive over loopback */
    assert_false(allowed(&cfg, "127.0.0.2:8080", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "[::1]:8080", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "localhost:8443", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "evil.example", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "evil.example:8080", "127.0.0.1", 8080));
    /* not uri-host [":" port] */
    assert_false(allowed(&cfg, NULL, "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "127.0.0.1:", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "127.0.0.1:08080x", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "127.0.0.1:1@attacker.example", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "127.0.0.1:8080:8080", "127.0.0.1", 8080));
    /* a connection that ended: nothing is ours */
    assert_false(allowed(&cfg, "127.0.0.1:8080", "", 0));
    assert_false(allowed(&cfg, "localhost", "", 0));
}

static void public_url_host_on_its_own_port(void **state)
{
    struct config cfg = {0};
    cfg.public_url = "https://MCP.example.com/base";
    assert_true(allowed(&cfg, "mcp.example.com", "127.0.0.1", 8080));
    assert_true(allowed(&cfg, "mcp.example.com:443", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "mcp.example.com:8080", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "example.com", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "mcp.example.com.evil", "127.0.0.1", 8080));
    cfg.public_url = "http://mcp.example.com:8000";
    assert_true(allowed(&cfg, "mcp.example.com:8000", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "mcp.example.com:80", "127.0.0.1", 8080));
    cfg.public_url = "http://[2001:db8::1]";
    assert_true(allowed(&cfg, "[2001:db8::1]:80", "127.0.0.1", 8080));
    assert_false(allowed(&cfg, "[2001:db8::2]", "127.0.0.1", 8080));
}

static void allowed_hosts_with_and_without_a_port(void **state)
{
    char *hosts[] = {"mcp.internal", "other.internal:9000", "[fd00::5]"};
    struct config cfg = {0};
    cfg.allowed_hosts = hosts;
    cfg.nallowed_hosts = 3;
    /* without a port: no port, or the one the connection reached */
    assert_true(allowed(&cfg, "mcp.internal", "10.0.0.5", 8443));
    assert_true(allowed(&cfg, "MCP.internal:8443", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "mcp.internal:443", "10.0.0.5", 8443));
    /* with a port: that port only */
    assert_true(allowed(&cfg, "other.internal:9000", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "other.internal", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "other.internal:8443", "10.0.0.5", 8443));
    assert_true(allowed(&cfg, "[fd00::5]:8443", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "[fd00::50]", "10.0.0.5", 8443));
    assert_false(allowed(&cfg, "internal", "10.0.0.5", 8443));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_address_reached_and_localhost),
        cmocka_unit_test(public_url_host_on_its_own_port),
        cmocka_unit_test(allowed_hosts_with_and_without_a_port),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
