/* metrics.c - see metrics.h.
 *
 * Counters live in one hash table keyed by the full series name
 * ('name{labels}'), with the family's HELP text in another, so a new counter
 * needs no registration.  The request latency histogram is one global
 * family with fixed buckets, which is what dashboards use for a p99.
 */
#include "core/metrics.h"

#include <string.h>

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct SigMetrics {
    GHashTable *series; /* char *series -> guint64 * */
    GHashTable *help;   /* char *family -> char *help */
    guint64 hist[G_N_ELEMENTS(buckets) + 1];
    double hist_sum;
    guint64 hist_count;
};

SigMetrics *
sig_metrics_new(void)
{
    SigMetrics *m = g_new0(SigMetrics, 1);
    m->series = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    m->help = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return m;
}

void
sig_metrics_free(SigMetrics *m)
{
    if (!m)
        return;
    g_hash_table_destroy(m->series);
    g_hash_table_destroy(m->help);
    g_free(m);
}

void
sig_metrics_add(SigMetrics *m, const char *name, const char *help, const char *labels, guint64 n)
{
    g_autofree char *key =
        labels && *labels ? g_strdup_printf("%s{%s}", name, labels) : g_strdup(name);
    guint64 *v = g_hash_table_lookup(m->series, key);
    if (!v) {
        v = g_new0(guint64, 1);
        g_hash_table_insert(m->series, g_steal_pointer(&key), v);
        if (!g_hash_table_contains(m->help, name))
            g_hash_table_insert(m->help, g_strdup(name), g_strdup(help));
    }
    *v += n;
}

void
sig_metrics_http(SigMetrics *m, const char *route, unsigned status, double seconds,
                 gboolean observe_latency)
{
    char labels[256];
    g_snprintf(labels, sizeof labels, "route=\"%s\",status=\"%u\"", route, status);
    sig_metrics_add(m, "consultd_http_requests_total",
                    "HTTP requests answered, by route pattern and status", labels, 1);
    if (!observe_latency)
        return;
    guint i = 0;
    while (i < G_N_ELEMENTS(buckets) && seconds > buckets[i])
        i++;
    m->hist[i]++;
    m->hist_sum += seconds;
    m->hist_count++;
}

static int
cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void
sig_metrics_render(SigMetrics *m, GString *out)
{
    g_autoptr(GPtrArray) keys = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, m->series);
    while (g_hash_table_iter_next(&it, &key, NULL))
        g_ptr_array_add(keys, key);
    g_ptr_array_sort(keys, cmp_str);
    const char *family = NULL;
    gsize family_len = 0;
    for (guint i = 0; i < keys->len; i++) {
        const char *k = keys->pdata[i];
        gsize flen = strcspn(k, "{");
        if (!family || flen != family_len || strncmp(k, family, flen) != 0) {
            g_autofree char *f = g_strndup(k, flen);
            g_string_append_printf(out, "# HELP %s %s\n# TYPE %s counter\n", f,
                                   (char *)g_hash_table_lookup(m->help, f), f);
            family = k;
            family_len = flen;
        }
        g_string_append_printf(out, "%s %" G_GUINT64_FORMAT "\n", k,
                               *(guint64 *)g_hash_table_lookup(m->series, k));
    }
    const char *h = "consultd_http_request_duration_seconds";
    g_string_append_printf(out,
                           "# HELP %s Time from request start to reply completion\n"
                           "# TYPE %s histogram\n",
                           h, h);
    guint64 cum = 0;
    for (guint i = 0; i < G_N_ELEMENTS(buckets); i++) {
        cum += m->hist[i];
        g_string_append_printf(out, "%s_bucket{le=\"%g\"} %" G_GUINT64_FORMAT "\n", h, buckets[i],
                               cum);
    }
    cum += m->hist[G_N_ELEMENTS(buckets)];
    g_string_append_printf(out,
                           "%s_bucket{le=\"+Inf\"} %" G_GUINT64_FORMAT "\n"
                           "%s_sum %.6f\n%s_count %" G_GUINT64_FORMAT "\n",
                           h, cum, h, m->hist_sum, h, m->hist_count);
}
