/* web.c - the browser pages, compiled into the binary as a GResource.
 *
 * One binary is the whole deployment: web/ is embedded at build time
 * (web/consultd.gresource.xml).  Pages are plain HTML, CSS and JavaScript
 * with no build step.  Responses carry a strict Content-Security-Policy: no
 * inline script, no foreign origins, so text from users (intros, names) can
 * never run as code even if a page forgot to escape it.
 */
#include "api/web.h"

#include <gio/gio.h>

#include "web-resources.h"
#include "workers/uploads.h"
#include <string.h>

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".svg", "image/svg+xml"},
};

static void
serve(SigReq *r, const char *name)
{
    g_autofree char *path = g_strconcat("/consultd/web/", name, NULL);
    /* Looked up in our own bundle, which also keeps its object file linked
     * from the static library. */
    g_autoptr(GBytes) data = g_resource_lookup_data(consultd_web_get_resource(), path,
                                                    G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
    if (!data || strstr(name, "..") || strchr(name, '/')) {
        sig_reply_error(r, 404, "not_found", "no such page");
        return;
    }
    const char *type = "application/octet-stream";
    for (guint i = 0; i < G_N_ELEMENTS(types); i++)
        if (g_str_has_suffix(name, types[i].ext))
            type = types[i].type;
    /* Replays redirected to the recording store play from its origin. */
    g_autofree char *store = sig_uploads_media_origin(r->app);
    g_autofree char *csp =
        g_strdup_printf("default-src 'self'; img-src 'self' data:; media-src 'self' blob:%s%s; "
                        "connect-src 'self'; style-src 'self'; script-src 'self'; "
                        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
                        store ? " " : "", store ? store : "");
    sig_req_header(r, "Content-Security-Policy", csp);
    sig_req_header(r, "Referrer-Policy", "no-referrer");
    sig_req_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    gsize len;
    const void *p = g_bytes_get_data(data, &len);
    sig_reply_data(r, 200, type, p, len);
}

void
sig_h_web_index(SigReq *r)
{
    serve(r, "index.html");
}

void
sig_h_web_static(SigReq *r)
{
    serve(r, r->params[0]);
}
