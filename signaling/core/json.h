/* json.h - JSON helpers every layer of signaling/ shares. */
#pragma once

#include <glib.h>
#include <jansson.h>

/* An RFC 3339 UTC time string for MS since the epoch, or null for 0. */
json_t *sig_json_time(gint64 ms);
