/* readers.h - the worker's RTP reader threads: a small pool (one per core,
 * at most 4; CONSULTD_READERS overrides) of threads, each running a
 * GMainContext of its own, on which libnice delivers received packets once a
 * session's transport is up (trim.c, "reading": docs/benchmarks.md has why).
 */
#pragma once

#include <glib.h>

/* Starts the pool once (later calls do nothing); from any thread. */
void media_readers_start(void);
/* The next reader's context, in turn (starting the pool if needed); NULL
 * if the pool has no threads (CONSULTD_READERS=0). */
GMainContext *media_reader_context(void);
