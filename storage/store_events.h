/* store_events.h - the event log's writer, for the storage/ files whose
 * transactions append domain events (store_events.c holds the log, the
 * projections and the webhook queue). */
#pragma once

#include "store_private.h"

/* Appends a domain event; only inside an open transaction.  PAYLOAD is a
 * JSON object's text. */
gboolean store_event_append(Store *s, const char *type, gint64 teacher, gint64 student,
                            gint64 consultation, const char *payload, GError **error);
/* TEXT (UTF-8) as a JSON string literal, quotes included, for payloads. */
char *store_json_string(const char *text);
