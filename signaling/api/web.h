/* web.h - the embedded browser pages (GET / and GET /static/{file}). */
#pragma once

#include "http/http.h"

void sig_h_web_index(SigReq *r);
void sig_h_web_static(SigReq *r);
