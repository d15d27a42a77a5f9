/* webhooks.h - delivering events to configured URLs from the durable queue.
 *
 * store_dispatch() queues one delivery per (event, URL) in the same
 * transaction that moves the notify cursor; this module sends them with
 * libsoup on the main loop, signs each body with the time
 * (X-Consultd-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">),
 * follows no redirect, reads no response body, and records every attempt.  Failed
 * attempts retry with exponential backoff (webhook-retry-ms doubling, capped
 * at 5 minutes) until webhook-max-attempts.  A restart resumes from the
 * queue, so a delivery is never lost; it may be repeated if the process dies
 * between a receiver's 2xx and the commit, which is why every body carries
 * a unique event id for the receiver to deduplicate on.
 */
#pragma once

#include "core/app.h"

SigWebhooks *sig_webhooks_new(SigApp *app);
void sig_webhooks_free(SigWebhooks *w); /* NULL-safe; cancels sends in flight */
/* Looks for due deliveries soon. */
void sig_webhooks_kick(SigApp *app);
guint sig_webhooks_in_flight(SigApp *app);

/* The X-Consultd-Signature value for BODY sent at unix time T:
 * "t=<T>,v1=<hex HMAC-SHA256(SECRET, "<T>." BODY)>".  Newly allocated. */
char *sig_webhooks_signature(const char *secret, gint64 t, const char *body, gsize len);
/* URL as it may be logged: without user, password or query.  Newly
 * allocated. */
char *sig_webhooks_url_for_log(const char *url);
