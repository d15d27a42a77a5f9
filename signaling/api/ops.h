/* ops.h - operational endpoints: /healthz, /readyz, /metrics, the webhook
 * deliveries list. */
#pragma once

#include "http/http.h"

void sig_h_healthz(SigReq *r);
void sig_h_readyz(SigReq *r);
void sig_h_metrics(SigReq *r);         /* 404 on the main listener when metrics-listen is set */
void sig_h_metrics_private(SigReq *r); /* on metrics-listen */
void sig_h_webhook_deliveries(SigReq *r);
void sig_h_admin_nodes(SigReq *r);
void sig_h_admin_node_drain(SigReq *r);
