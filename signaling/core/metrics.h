/* metrics.h - counters and histograms, rendered in Prometheus text format.
 *
 * Owned by the main loop; updated inline on the hot path (a hash lookup and
 * an increment), rendered only when /metrics is scraped.
 */
#pragma once

#include <glib.h>

typedef struct SigMetrics SigMetrics;

SigMetrics *sig_metrics_new(void);
void sig_metrics_free(SigMetrics *m); /* NULL-safe */

/* One finished HTTP request: ROUTE is its pattern ("unmatched" if none),
 * STATUS 0 if the client went away before a reply. */
void sig_metrics_http(SigMetrics *m, const char *route, unsigned status, double seconds,
                      gboolean observe_latency);
/* Adds N to counter NAME{LABELS}; LABELS is "" or 'k="v",k2="v2"'.  HELP is
 * remembered on first use. */
void sig_metrics_add(SigMetrics *m, const char *name, const char *help, const char *labels,
                     guint64 n);
/* Appends every counter and histogram to OUT. */
void sig_metrics_render(SigMetrics *m, GString *out);
