/* app.h - the main process's shared context.
 *
 * signaling/ is layered; a file includes only its own layer and the ones
 * below it (tests/check_includes.py enforces it):
 *
 *   main.c      the composition root: builds SigApp, wires the layers
 *   api/        one file per resource: the route table and its handlers
 *   workers/    the consultd-media processes: spawn, supervise, place
 *               consultations, the channel, finalize and compose runs
 *   http/       libmicrohttpd in the loop: routing, replies, request helpers
 *   core/       this context, config, metrics, rate limits, the events
 *               dispatcher and its listeners, webhooks, health checks
 *
 * Below all of them: storage/ (store.h) and the shared vocabulary
 * (common/vocab.h).
 *
 * One SigApp exists per consultd process.  It is created by main.c, lives as
 * long as the GLib main loop and is only ever touched from the loop's thread:
 * no field here needs a lock.  On PostgreSQL, requests and database timers
 * run in fibers on that thread (core/task.h): across a store call the
 * loop may have run, so a pointer into another subsystem's state is looked
 * up again after one, not kept.  Subsystems keep their own state behind opaque
 * handles and get the app as their first argument.
 */
#pragma once

#include <glib.h>

#include "core/config.h"
#include "store.h"

typedef struct SigHttp SigHttp;
typedef struct SigMetrics SigMetrics;
typedef struct SigAuth SigAuth;
typedef struct SigConsult SigConsult;
typedef struct SigEvents SigEvents;
typedef struct SigWebhooks SigWebhooks;
typedef struct SigMedia SigMedia;
typedef struct SigRecordings SigRecordings;
typedef struct SigUploads SigUploads;
typedef struct SigHealth SigHealth;
typedef struct SigStreams SigStreams;
typedef struct SigIce SigIce;
typedef struct SigSandbox SigSandbox;

typedef struct SigApp {
    SigConfig *cfg;
    Store *store;
    SigHttp *http;
    SigHttp *metrics_http; /* metrics-listen, when set */
    SigMetrics *metrics;
    SigAuth *auth;
    SigConsult *consult;
    SigEvents *events;
    SigWebhooks *webhooks;
    SigMedia *media;
    SigRecordings *recordings;
    SigUploads *uploads;
    SigHealth *health;
    SigStreams *streams;
    SigIce *ice;
    SigSandbox *sandbox;
    char *media_bin; /* the consultd-media executable (workers, repairs) */
    GMainLoop *loop;
    gint64 started_at; /* monotonic, microseconds */
    gboolean stopping;
    gint64 stop_deadline; /* monotonic: when a shutdown stops waiting */
    gboolean draining;    /* no new consultations here; exits when empty */
    gboolean stopped;     /* the loop has ended: no new fiber may start (core/task.h) */
    void (*drain)(struct SigApp *app, const char *why); /* starts draining (main.c) */
} SigApp;
