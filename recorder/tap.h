/* tap.h - a tap on a tee: an appsink on one of its request pads whose
 * callback gets every buffer.  The relay and the recorder both hang their
 * branches on the room's tees this way; the appsink never blocks the tee
 * (it drops when its reader falls behind) and whatever the callback does
 * with a buffer, the tee only ever sees GST_FLOW_OK. */
#pragma once

#include <gst/app/gstappsink.h>
#include <gst/gst.h>

typedef struct {
    GstElement *pipe, *tee;
    GstElement *sink; /* NULL while detached */
    GstPad *pad;      /* the tee's request pad */
} RecTap;

typedef GstFlowReturn (*RecTapFunc)(GstAppSink *sink, gpointer data);

/* Adds the appsink to PIPE and links it to a new pad of TEE. */
void rec_tap_attach(RecTap *t, GstElement *pipe, GstElement *tee, guint max_buffers,
                    RecTapFunc on_sample, gpointer data);
/* Unlinks, releases the tee pad and removes the appsink; no-op if detached. */
void rec_tap_detach(RecTap *t);
/* A keyframe request sent upstream into the tee, towards the publisher;
 * FALSE when detached. */
gboolean rec_tap_request_keyframe(RecTap *t);
