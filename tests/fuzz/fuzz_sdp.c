/* Fuzz target: the SDP offer scan and the trickle-ice-sdpfrag walk. */
#include <stdint.h>

#include "core/sdpscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
count(guint mline, const char *candidate, gpointer data)
{
    g_assert(candidate != NULL);
    (*(guint *)data)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = g_strndup((const char *)data, size);
    SigSdpOffer *o = sig_sdp_scan(text);
    sig_sdp_offer_usable(o);
    guint n = 0;
    /* The same bytes as a PATCH body against the scanned offer. */
    sig_sdpfrag_each(text, o->ufrag, o->mids, count, &n);
    sig_sdpfrag_each(text, NULL, NULL, count, &n);
    sig_sdp_offer_free(o);
    g_free(text);
    return 0;
}
