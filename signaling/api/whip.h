/* whip.h - the WHIP (RFC 9725) and WHEP endpoints: a participant's offer
 * is checked here and handed to workers/media.c, which places it on a
 * media worker; trickled candidates and DELETE go the same way. */
#pragma once

#include "http/http.h"

void sig_h_whip_post(SigReq *r);
void sig_h_whep_post(SigReq *r);
void sig_h_whip_options(SigReq *r);
void sig_h_media_session_patch(SigReq *r);
void sig_h_media_session_delete(SigReq *r);
/* GET /api/admin/media-workers. */
void sig_h_media_workers(SigReq *r);
