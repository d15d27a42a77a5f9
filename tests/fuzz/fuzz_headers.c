/* Fuzz target: the request headers we parse ourselves besides Range
 * (fuzz_range.c): If-Match entity-tag lists and Last-Event-ID.  The first
 * byte splits the input into an ETag and a header value. */
#include <stdint.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    gsize cut = MIN((gsize)data[0], size - 1);
    char *etag = g_strndup((const char *)data + 1, cut);
    char *header = g_strndup((const char *)data + 1 + cut, size - 1 - cut);

    gboolean m = sig_etag_match(header, etag);
    /* A match needs the tag in quotes, not weak, or the header "*". */
    if (m && !strchr(header, '*')) {
        g_autofree char *quoted = g_strdup_printf("\"%s\"", etag);
        g_assert(strstr(header, quoted) != NULL);
    }
    /* The ETag itself, quoted (our ETags have no quotes inside), matches,
     * alone and at the end of a list; its weak form never does. */
    if (!strchr(etag, '"') && strlen(etag) == cut) {
        g_autofree char *alone = g_strdup_printf("\"%s\"", etag);
        g_autofree char *list = g_strdup_printf("\"x\", W/\"%s\" ,\t\"%s\"", etag, etag);
        g_autofree char *weak = g_strdup_printf("W/\"%s\"", etag);
        g_assert(sig_etag_match(alone, etag));
        g_assert(sig_etag_match(list, etag));
        g_assert(!sig_etag_match(weak, etag));
    }

    gint64 seq = -7;
    if (sig_parse_event_id(header, &seq))
        g_assert(seq >= -1 && (seq == -1) == (*header == '\0'));
    else
        g_assert(seq == -1);
    g_free(etag);
    g_free(header);
    return 0;
}
