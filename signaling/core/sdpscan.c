/* sdpscan.c - see sdpscan.h. */
#include "core/sdpscan.h"

#include <string.h>

SigSdpOffer *
sig_sdp_scan(const char *sdp)
{
    SigSdpOffer *o = g_new0(SigSdpOffer, 1);
    o->mids = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) lines = g_strsplit_set(sdp, "\r\n", -1);
    for (guint i = 0; lines[i]; i++) {
        const char *l = lines[i];
        if (g_str_has_prefix(l, "m=")) {
            g_ptr_array_add(o->mids, g_strdup(""));
        } else if (g_str_has_prefix(l, "a=mid:") && o->mids->len) {
            g_free(o->mids->pdata[o->mids->len - 1]);
            o->mids->pdata[o->mids->len - 1] = g_strdup(l + 6);
        } else if (g_str_has_prefix(l, "a=ice-ufrag:") && !o->ufrag) {
            o->ufrag = g_strdup(l + 12);
        } else if (g_str_has_prefix(l, "a=fingerprint:")) {
            o->fingerprint = TRUE;
        }
    }
    return o;
}

void
sig_sdp_offer_free(SigSdpOffer *o)
{
    if (!o)
        return;
    g_free(o->ufrag);
    g_ptr_array_unref(o->mids);
    g_free(o);
}

gboolean
sig_sdp_offer_usable(const SigSdpOffer *o)
{
    return o->mids->len > 0 && o->fingerprint && o->ufrag;
}

gboolean
sig_sdpfrag_each(const char *frag, const char *ufrag, const GPtrArray *mids,
                 void (*fn)(guint mline, const char *candidate, gpointer data), gpointer data)
{
    g_auto(GStrv) lines = g_strsplit_set(frag, "\r\n", -1);
    for (guint i = 0; lines[i]; i++)
        if (g_str_has_prefix(lines[i], "a=ice-ufrag:") && g_strcmp0(lines[i] + 12, ufrag))
            return FALSE;
    guint mline = 0;
    for (guint i = 0; lines[i]; i++) {
        const char *l = lines[i];
        if (g_str_has_prefix(l, "a=mid:")) {
            for (guint k = 0; mids && k < mids->len; k++)
                if (!strcmp(mids->pdata[k], l + 6))
                    mline = k;
        } else if (g_str_has_prefix(l, "a=candidate:")) {
            fn(mline, l + 2, data);
        }
    }
    return TRUE;
}
