/* sandbox.h - the user and limits every consultd-media child runs with.
 *
 * The media workers parse SDP, DTLS and RTP from the internet in GStreamer:
 * a bug there must not reach the database (password hashes, sessions).  When
 * consultd runs as root, its children (workers, --finalize, --compose) run
 * as media-user (default consultd-media), which owns the recordings
 * directory and its cache and nothing else of the data dir; the database
 * stays 0600 to the main user.  Every child also gets no_new_privs; the
 * worker limits its own writes to the recordings directory with Landlock
 * where the kernel has it (media/worker.c).
 */
#pragma once

#include <gio/gio.h>

#include "core/app.h"

typedef struct SigSandbox SigSandbox;

/* Resolves media-user and prepares the directories (once, at start). */
SigSandbox *sig_sandbox_new(SigApp *app);
void sig_sandbox_free(SigSandbox *sb); /* NULL-safe */

/* A launcher for a consultd-media child with FLAGS: its user, its
 * environment, no_new_privs, and PRIORITY_LOW's nice 19 when asked. */
GSubprocessLauncher *sig_sandbox_launcher(SigApp *app, GSubprocessFlags flags,
                                          gboolean lowest_priority);
/* The uid the children run as (for logs and tests); -1: the main's own. */
gint64 sig_sandbox_uid(SigApp *app);
