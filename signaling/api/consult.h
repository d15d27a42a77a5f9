/* consult.h - the consultation domain's HTTP side: teachers, presence,
 * favorites, consultations, my page, and the timers that expire requests
 * and sweep presence. */
#pragma once

#include "http/http.h"

SigConsult *sig_consult_new(SigApp *app);
void sig_consult_free(SigConsult *c); /* NULL-safe */

/* A consultation as the API shows it; new reference. */
json_t *sig_consultation_json(const StoreConsultation *c);

void sig_h_teachers_list(SigReq *r);
void sig_h_teacher_get(SigReq *r);
void sig_h_teacher_profile(SigReq *r);
void sig_h_teacher_presence(SigReq *r);
void sig_h_favorite_add(SigReq *r);
void sig_h_favorite_remove(SigReq *r);
void sig_h_consultation_create(SigReq *r);
void sig_h_consultation_get(SigReq *r);
void sig_h_consultations_list(SigReq *r);
void sig_h_consultation_accept(SigReq *r);
void sig_h_consultation_decline(SigReq *r);
void sig_h_consultation_cancel(SigReq *r);
void sig_h_consultation_end(SigReq *r);
/* The chat: GET (participants, admin) and POST (participants, while the
 * consultation is requested, live or interrupted) .../{id}/messages. */
void sig_h_messages_list(SigReq *r);
/* A teacher's waiting line: GET (its teacher or an admin: the students;
 * a student: their place), POST and DELETE (a student joins, leaves), PUT
 * {"open": bool} (the teacher). */
void sig_h_line_get(SigReq *r);
void sig_h_line_join(SigReq *r);
void sig_h_line_leave(SigReq *r);
void sig_h_line_set(SigReq *r);
void sig_h_message_create(SigReq *r);
void sig_h_mypage(SigReq *r);
