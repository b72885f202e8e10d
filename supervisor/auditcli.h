/*
 * auditcli.h — `mcpvisor audit verify FILE...` and `mcpvisor audit query FILE... [filters]`:
 * reading the log audit.c writes. See auditcli.c.
 */
#ifndef MCPVISOR_AUDITCLI_H
#define MCPVISOR_AUDITCLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define AUDITCLI_EXIT_OK 0 /* chain intact; a query ran (even with no match) */
#define AUDITCLI_EXIT_BROKEN                                                                       \
    1                         /* verify: the chain is broken, a line is torn, invalid or too long */
#define AUDITCLI_EXIT_ERROR 2 /* usage, a file that cannot be read, no memory */

/*
 * argv starts after the word "audit" ("verify", "query", "help"). Results go to out, errors,
 * notes and usage to errout. Returns AUDITCLI_EXIT_*.
 */
int audit_cli(int argc, char **argv, FILE *out, FILE *errout);

/*
 * RFC 3339 date-time ("2026-11-21T10:00:00Z", "2026-11-21t10:00:00.5+02:00"; fractional seconds
 * beyond microseconds are ignored) to microseconds since the epoch, UTC. With allow_date, a
 * bare "2026-11-21" is midnight UTC. Returns 0, or -1 when s is not one of those.
 */
int audit_parse_time(const char *s, bool allow_date, int64_t *us);

#endif
