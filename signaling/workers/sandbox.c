/* sandbox.c - see sandbox.h. */
#include "workers/sandbox.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "vocab.h"

struct SigSandbox {
    gboolean switch_user;
    uid_t uid;
    gid_t gid;
    char *home; /* <data>/media-home: the children's HOME and cache */
};

/* Root, or (under the systemd unit) CAP_SETUID and CAP_SETGID. */
static gboolean
can_switch_user(void)
{
    if (geteuid() == 0)
        return TRUE;
    g_autofree char *status = NULL;
    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
        return FALSE;
    const char *cap = strstr(status, "\nCapEff:");
    guint64 eff = cap ? g_ascii_strtoull(cap + 9, NULL, 16) : 0;
    return (eff & (1u << 6)) && (eff & (1u << 7)); /* CAP_SETGID, CAP_SETUID */
}

SigSandbox *
sig_sandbox_new(SigApp *app)
{
    SigSandbox *sb = g_new0(SigSandbox, 1);
    app->sandbox = sb;
    const char *user = app->cfg->media_user;
    g_autofree char *rec = consultd_recordings_dir(app->cfg->data_dir);
    sb->home = g_build_filename(app->cfg->data_dir, "media-home", NULL);
    g_mkdir_with_parents(rec, 0750);
    g_mkdir_with_parents(sb->home, 0750);
    if (!*user || !can_switch_user()) {
        g_info("sandbox: media workers run as this process's user");
        return sb;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        g_warning("sandbox: media-user '%s' does not exist: media workers run as root "
                  "(create it: useradd --system --no-create-home %s)",
                  user, user);
        return sb;
    }
    sb->switch_user = TRUE;
    sb->uid = pw->pw_uid;
    sb->gid = pw->pw_gid;
    /* The children reach the recordings through the data dir (traverse
     * only), own the recordings and their home, and nothing else. */
    g_chmod(app->cfg->data_dir, 0711);
    if (chown(rec, sb->uid, sb->gid) != 0 || chown(sb->home, sb->uid, sb->gid) != 0)
        g_warning("sandbox: cannot give %s the recordings directory: %s", user, g_strerror(errno));
    g_message("sandbox: media workers run as %s (uid %u); the database is not theirs", user,
              (unsigned)sb->uid);
    return sb;
}

void
sig_sandbox_free(SigSandbox *sb)
{
    if (!sb)
        return;
    g_free(sb->home);
    g_free(sb);
}

typedef struct {
    gboolean switch_user;
    uid_t uid;
    gid_t gid;
    gboolean nice;
} Setup;

/* In the child, between fork and exec: only async-signal-safe calls. */
static void
child_setup(gpointer data)
{
    const Setup *s = data;
    if (s->nice && nice(19) == -1) {
        /* best effort */
    }
    if (s->switch_user && (setgroups(0, NULL) != 0 || setgid(s->gid) != 0 || setuid(s->uid) != 0))
        _exit(126); /* never run a worker as root by mistake */
    /* Capabilities the unit gave the main process stay with it. */
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

GSubprocessLauncher *
sig_sandbox_launcher(SigApp *app, GSubprocessFlags flags, gboolean lowest_priority)
{
    SigSandbox *sb = app->sandbox;
    GSubprocessLauncher *l = g_subprocess_launcher_new(flags);
    Setup *s = g_new0(Setup, 1);
    s->switch_user = sb && sb->switch_user;
    s->uid = sb ? sb->uid : 0;
    s->gid = sb ? sb->gid : 0;
    s->nice = lowest_priority;
    g_subprocess_launcher_set_child_setup(l, child_setup, s, g_free);
    if (sb && sb->switch_user) {
        /* GStreamer keeps its registry under the cache dir: theirs. */
        g_subprocess_launcher_setenv(l, "HOME", sb->home, TRUE);
        g_subprocess_launcher_setenv(l, "XDG_CACHE_HOME", sb->home, TRUE);
    }
    return l;
}

gint64
sig_sandbox_uid(SigApp *app)
{
    SigSandbox *sb = app->sandbox;
    return sb && sb->switch_user ? (gint64)sb->uid : -1;
}
