/* routes.h - the API layer's table: every HTTP endpoint of the main process.
 *
 * api/ is the top layer of signaling/: one file per resource (accounts,
 * consult, whip, recordings, stream, ops, ice, web), each a set of
 * handlers that check the request, call storage/ or workers/, and answer
 * with exactly one sig_reply_*().  A handler makes a domain transition and
 * kicks the dispatcher; what follows from the event (media ending, a
 * combined recording, webhooks, live streams) is a listener's business, not
 * the handler's (core/events.h).  api/ files may include each other only
 * downwards in this order: routes -> the resources -> stream, recordings,
 * ice.
 */
#pragma once

#include "http/http.h"

const SigRoute *sig_routes(guint *n);
/* The table of the metrics-listen address: /metrics and /healthz only. */
const SigRoute *sig_metrics_routes(guint *n);
