/* config.h - consultd configuration.
 *
 * Precedence, lowest to highest: built-in defaults, the config file
 * (--config FILE, GKeyFile group [consultd]), the environment (CONSULTD_KEY,
 * upper case, '-' as '_'), command-line flags (--key).  Every key exists in
 * all four places; docs/configuration in README.md lists them.
 */
#pragma once

#include <gio/gio.h>

typedef struct SigConfig {
    char *listen; /* ADDR:PORT or [ADDR6]:PORT */
    char *data_dir;
    char *database;          /* "" or sqlite:[PATH] or a PostgreSQL URL */
    gint64 database_timeout; /* ms: PostgreSQL statements and replies */
    char *node_id;           /* this node among several ("": the host name) */
    char *node_url;          /* how other nodes and the entry point reach it */
    char *public_url;        /* absolute base URL, derived from listen if empty */
    char *log_level;         /* error|warning|message|info|debug */
    gint64 max_body;         /* bytes */
    gint64 conn_timeout;     /* seconds of idleness before a connection closes */
    gint64 conn_limit;
    gint64 per_ip_conn_limit;
    char *trusted_proxies; /* comma-separated addresses or CIDRs */
    gint64 session_ttl;    /* seconds */
    gint64 login_ip_per_min;
    gint64 login_user_fail_per_15min;
    gint64 shutdown_grace;       /* seconds in-flight requests get at SIGTERM */
    gint64 drain_timeout;        /* seconds a draining node's consultations may go on */
    gint64 request_timeout;      /* seconds a request waits for the teacher */
    gint64 presence_grace;       /* seconds a teacher may be without a stream */
    gint64 max_live;             /* live consultations at once (503 above) */
    gint64 max_pending;          /* requested consultations at once (503 above) */
    gint64 request_rate_per_min; /* consultation requests per student */
    gint64 write_rate_per_min;   /* favorite/presence/profile writes per user */
    gint64 event_retention_days; /* 0: events are kept forever */
    gint64 sse_per_user;         /* event streams per user (429 above) */
    char *webhook_urls;          /* comma-separated */
    char *webhook_secret;
    gint64 webhook_max_attempts;
    gint64 webhook_retry_ms; /* first retry delay; doubles, capped at 5 min */
    gint64 media_workers;    /* media worker processes; 0 disables media */
    gboolean media_ice_loopback;
    char *media_ice_addresses;
    gint64 media_port_min, media_port_max;
    char *media_public_ip;
    char *media_stun;
    gint64 db_busy_timeout;  /* ms to wait for another process's lock */
    char *media_turn;        /* comma-separated TURN URLs for clients */
    char *media_turn_secret; /* shared with the TURN server (REST credentials) */
    gint64 media_turn_ttl;
    gint64 media_timeout;            /* seconds without RTP: a participant is gone */
    gint64 media_end_grace;          /* seconds a live consultation may be empty */
    gint64 media_max_bitrate;        /* kbit/s a publisher's video may send at most */
    gint64 media_restart_max;        /* cap of the worker restart backoff, seconds */
    gint64 media_worker_stall;       /* seconds of silence or not reading: lost */
    char *media_user;                /* as root: the workers' user ("": same) */
    gint64 max_consultation_minutes; /* a consultation ends by itself after */
    gint64 record_min_free_bytes;    /* below: recordings stop (disk_low) */
    gboolean record;                 /* record every consultation */
    gboolean compose;                /* make a combined side-by-side file afterwards */
    gint64 retention_days;           /* delete recordings older than this (0: never) */
    gint64 retention_max_bytes;      /* keep recordings under this total (0: no cap) */
    gboolean demo;
    gboolean demo_public; /* --demo allowed off loopback */
    char *metrics_listen; /* "" : /metrics on the main listener */
    /* The recording store (recorder/objects.h): "local", "dir:/path" or
     * "s3://bucket/prefix", and how replays reach it. */
    char *recordings_store;
    char *recordings_serve; /* "auto", "redirect" (s3 only) or "proxy" */
    gint64 recordings_url_ttl;
    char *s3_endpoint, *s3_region, *s3_access_key, *s3_secret_key, *s3_addressing;
    gint64 s3_part_size;
    gint64 upload_retry_max;     /* s: backoff cap between upload attempts */
    gint64 message_rate_per_min; /* chat messages per user per minute */
    gint64 line_max;             /* students waiting in one teacher's line */
    char *config_file;
} SigConfig;

/* Parses ARGV (flags are removed from it) on top of file, environment and
 * defaults.  Returns NULL and sets ERROR on a bad value or unknown flag.
 * --help and --version print and exit from inside. */
SigConfig *sig_config_load(int *argc, char ***argv, GError **error);
void sig_config_free(SigConfig *cfg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SigConfig, sig_config_free)
/* Prints the configuration keys as a markdown table (for the README). */
void sig_config_print_table(void);

/* The consultd-media executable: $CONSULTD_MEDIA_BIN, else the one beside
 * this executable, else the first in PATH.  Newly allocated. */
char *sig_find_media_bin(void);
/* The program NAME beside this one (or $ENV_VAR, or on PATH). */
char *sig_find_bin(const char *name, const char *env_var);

/* TEXT as an address mask: "10.0.0.0/8", "::1/128", or a bare address (a
 * mask of its whole length).  NULL if it is neither. */
GInetAddressMask *sig_config_parse_cidr(const char *text);
