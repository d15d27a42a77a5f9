/* ops.h - operational endpoints: /healthz, /readyz, /metrics. */
#pragma once

#include "http.h"

/* A readiness check: TRUE when the subsystem can serve; else sets *WHY. */
typedef gboolean (*SigReadyFunc)(SigApp *app, char **why);

/* Registers a named readiness check (subsystems do this at start-up). */
void sig_ops_add_ready_check(const char *name, SigReadyFunc fn);

/* Appends the gauges a subsystem owns to a /metrics scrape. */
typedef void (*SigMetricsFunc)(SigApp *app, GString *out);
void sig_ops_add_metrics(SigMetricsFunc fn);

void sig_h_healthz(SigReq *r);
void sig_h_readyz(SigReq *r);
void sig_h_metrics(SigReq *r);
