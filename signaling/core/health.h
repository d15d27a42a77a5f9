/* health.h - what /readyz asks and what /metrics adds: the registries that
 * subsystems fill at start-up (api/ops.c renders them).
 */
#pragma once

#include "core/app.h"

/* A readiness check: TRUE when the subsystem can serve; else sets *WHY. */
typedef gboolean (*SigReadyFunc)(SigApp *app, char **why);
/* Appends the gauges a subsystem owns to a /metrics scrape. */
typedef void (*SigMetricsFunc)(SigApp *app, GString *out);

SigHealth *sig_health_new(SigApp *app);
void sig_health_free(SigHealth *h); /* NULL-safe */

/* Registers a named readiness check. */
void sig_health_add_ready_check(SigApp *app, const char *name, SigReadyFunc fn);
/* Registers a source of gauges. */
void sig_health_add_metrics(SigApp *app, SigMetricsFunc fn);

/* Runs every check in registration order: FN gets each name, and NULL or
 * why it is not ready.  Returns whether all passed. */
gboolean sig_health_check(SigApp *app, void (*fn)(const char *name, const char *why, gpointer data),
                          gpointer data);
/* Appends every registered source's gauges to OUT. */
void sig_health_metrics(SigApp *app, GString *out);

/* The CPU this node used since the previous call: this process and the
 * processes PIDS (its media workers), per mille of the machine's cores
 * (0 on the first call). */
gint64 sig_health_cpu(SigApp *app, const gint64 *pids, guint n);
