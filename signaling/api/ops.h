/* ops.h - operational endpoints: /healthz, /readyz, /metrics, the webhook
 * deliveries list. */
#pragma once

#include "http/http.h"

void sig_h_healthz(SigReq *r);
void sig_h_readyz(SigReq *r);
void sig_h_metrics(SigReq *r);
void sig_h_webhook_deliveries(SigReq *r);
