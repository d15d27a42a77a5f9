/* recordings.h - the recordings API: lists, replay with byte ranges, the
 * admin view and a retention run. */
#pragma once

#include "http/http.h"

/* A recording as the API shows it; new reference. */
json_t *sig_recording_json(gint64 consultation, const char *file, ConsultdRole role,
                           ConsultdRecState state, gint64 duration_ms, gint64 size,
                           gint64 offset_ms);
/* Range header parsing (exposed for tests and fuzzing): 1 with [*from, *to],
 * 0 to serve everything, -1 when unsatisfiable. */
int sig_parse_range(const char *header, gint64 size, gint64 *from, gint64 *to);

void sig_h_recordings_list(SigReq *r);
void sig_h_retention_run(SigReq *r);
void sig_h_admin_recordings(SigReq *r);
void sig_h_recording_file(SigReq *r);
/* POST /api/admin/recordings/{id}/write-off: an unfinished recording whose
 * node is gone for good becomes failed (node_lost); 409 if it is finished
 * or its node serves. */
void sig_h_admin_recording_write_off(SigReq *r);
