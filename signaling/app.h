/* app.h - the main process's shared context.
 *
 * One SigApp exists per consultd process.  It is created by main.c, lives as
 * long as the GLib main loop and is only ever touched from the loop's thread:
 * no field here needs a lock.  Subsystems keep their own state behind opaque
 * handles and get the app as their first argument.
 */
#pragma once

#include <glib.h>

#include "config.h"
#include "store.h"

typedef struct SigHttp SigHttp;
typedef struct SigMetrics SigMetrics;
typedef struct SigAuth SigAuth;
typedef struct SigConsult SigConsult;
typedef struct SigEvents SigEvents;
typedef struct SigWebhooks SigWebhooks;
typedef struct SigMedia SigMedia;

typedef struct SigApp {
    SigConfig *cfg;
    Store *store;
    SigHttp *http;
    SigMetrics *metrics;
    SigAuth *auth;
    SigConsult *consult;
    SigEvents *events;
    SigWebhooks *webhooks;
    SigMedia *media;
    GMainLoop *loop;
    gint64 started_at; /* monotonic, microseconds */
    gboolean stopping;
} SigApp;
