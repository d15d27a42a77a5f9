/* reactions.h - what the media side does about domain events: the one
 * place where "a consultation closed" ends its media and queues its
 * combined recording.  Handlers only make transitions; the events
 * dispatcher (core/events.c) hands every new event here.
 */
#pragma once

#include "core/app.h"

/* Registers the reactions with the dispatcher (after sig_events_new()). */
void sig_reactions_init(SigApp *app);
