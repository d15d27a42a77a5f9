/* sdpscan.h - the few things the main process reads from SDP text itself:
 * an offer's ICE ufrag, fingerprint presence and m-line mids (before the
 * worker sees it), and the candidates of a trickle-ice-sdpfrag PATCH.
 * Everything else about SDP is the media worker's (GStreamer's) business.
 * Pure functions on untrusted text: fuzzed by tests/fuzz/fuzz_sdp.c. */
#pragma once

#include <glib.h>

typedef struct {
    char *ufrag; /* first a=ice-ufrag, or NULL */
    gboolean fingerprint;
    GPtrArray *mids; /* mid of each m-line ("" if none), in order */
} SigSdpOffer;

/* Scans an offer; never fails (missing parts stay NULL/FALSE/empty). */
SigSdpOffer *sig_sdp_scan(const char *sdp);
void sig_sdp_offer_free(SigSdpOffer *o); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SigSdpOffer, sig_sdp_offer_free)
/* TRUE if the offer has m-lines, an ICE ufrag and a fingerprint. */
gboolean sig_sdp_offer_usable(const SigSdpOffer *o);

/* Walks a trickle-ice-sdpfrag body: returns FALSE (calling nothing) when it
 * carries ICE credentials other than UFRAG (an ICE restart); otherwise
 * calls FN for each a=candidate line with the index of its m-line (by the
 * a=mid that precedes it, looked up in MIDS). */
gboolean sig_sdpfrag_each(const char *frag, const char *ufrag, const GPtrArray *mids,
                          void (*fn)(guint mline, const char *candidate, gpointer data),
                          gpointer data);
