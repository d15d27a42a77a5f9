/* json.c - see json.h. */
#include "core/json.h"

json_t *
sig_json_time(gint64 ms)
{
    if (ms <= 0)
        return json_null();
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(ms / 1000);
    if (!dt)
        return json_null();
    g_autofree char *base = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%S");
    char buf[64];
    g_snprintf(buf, sizeof buf, "%s.%03dZ", base, (int)(ms % 1000));
    return json_string(buf);
}
