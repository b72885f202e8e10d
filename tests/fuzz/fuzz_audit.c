/*
 * fuzz_audit.c — reading audit logs: `mcpvisor audit verify` and `audit query` (auditcli.c), and
 * the chain tail audit_new reads when the daemon starts on an existing log (audit.c).
 *
 * The first byte picks what reads the rest, which is the log file's content (held in a memfd,
 * opened by its /proc/self/fd name as the commands open a file): 0 verify, 1 query --json with
 * filters, 2 query as a table, 3 audit_new on the log (continuing the chain, or refusing it),
 * 4 audit_parse_time of the text as --since would take it.
 */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit.h"
#include "auditcli.h"

static struct {
    int memfd;
    char name[64];
    FILE *null;
    struct event_base *base;
} g;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if ((g.memfd = memfd_create("audit.jsonl", MFD_CLOEXEC)) == -1 ||
        (g.null = fopen("/dev/null", "we")) == NULL || (g.base = event_base_new()) == NULL)
        abort();
    snprintf(g.name, sizeof g.name, "/proc/self/fd/%d", g.memfd);
    return 0;
}

static void put_log(const uint8_t *data, size_t size)
{
    if (ftruncate(g.memfd, 0) == -1 ||
        (size > 0 && pwrite(g.memfd, data, size, 0) != (ssize_t)size))
        abort();
}

static void run_cli(int argc, char **argv)
{
    int rc = audit_cli(argc, argv, g.null, g.null);
    if (rc != AUDITCLI_EXIT_OK && rc != AUDITCLI_EXIT_BROKEN && rc != AUDITCLI_EXIT_ERROR)
        abort();
}

static void tail(void)
{
    char err[256];
    int fd = open(g.name, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd == -1)
        abort();
    struct audit *a = audit_new(g.base, fd, CONFIG_AUDIT_SYNC_NONE, 100, err, sizeof err);
    if (a == NULL)
        return;
    audit_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0] % 5;
    data++;
    size--;
    if (mode == 4) {
        char *s = malloc(size + 1);
        int64_t us;
        if (s == NULL)
            return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        audit_parse_time(s, true, &us);
        audit_parse_time(s, false, &us);
        free(s);
        return 0;
    }
    put_log(data, size);
    switch (mode) {
    case 0: {
        char *argv[] = {"verify", g.name, NULL};
        run_cli(2, argv);
        break;
    }
    case 1: {
        char *argv[] = {"query",
                        g.name,
                        "--tenant",
                        "acme",
                        "--since=2026-01-01",
                        "--until",
                        "2027-01-01T00:00:00Z",
                        "--json",
                        NULL};
        run_cli(8, argv);
        break;
    }
    case 2: {
        char *argv[] = {"query", g.name, g.name, NULL};
        run_cli(3, argv);
        break;
    }
    case 3:
        tail();
        break;
    }
    return 0;
}
