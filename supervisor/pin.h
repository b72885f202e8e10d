/*
 * pin.h — `mcpvisor pin SERVER [--write]`: start one server in its sandbox, list its tools, show
 * each tool's pin (jcs_tool_pin) beside what the manifest says, and optionally write the pins
 * into the manifest. See pin.c.
 */
#ifndef MCPVISOR_PIN_H
#define MCPVISOR_PIN_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"

#define PIN_EXIT_MATCH   0 /* every tool the server lists is pinned and matches */
#define PIN_EXIT_DIFFERS 1 /* drift, new, missing or unpinned tools */
#define PIN_EXIT_ERROR   2 /* unknown server, spawn failure, protocol error, write failure */

struct sandbox_features;
struct sandbox_profile;

/*
 * Runs the command for the manifest `server` of cfg. feat and prof are what sandbox_setup made
 * (prof parallel to cfg->manifests), as the daemon's spawner gets them. The table goes to out,
 * errors to stderr. With `write`, the manifest file is rewritten atomically (and validated with
 * the whole configuration before it replaces the old one); the exit status then describes the
 * manifest as written: 1 only while it names tools the server no longer lists.
 * Returns PIN_EXIT_*.
 */
int pin_run(const struct config *cfg, const struct sandbox_features *feat,
            const struct sandbox_profile *prof, const char *server, bool write, FILE *out);

/*
 * `mcpvisor check`: starts every server as pin_run does and reports, per server, the tools that
 * drifted, are not in the manifest, or have schemas the daemon cannot validate with (each
 * unsupported keyword and where it is). A server that cannot be started or listed is a warning.
 * Returns 1 when a listed tool would be refused at run time (under pin_mode enforce: drift, or
 * a schema that cannot be validated), else 0.
 */
int pin_survey(const struct config *cfg, const struct sandbox_features *feat,
               const struct sandbox_profile *prof, FILE *out);

#endif
