/* conf.h: spacer.conf — INI sections, ${VAR} interpolation, .env, SPACER_<SECTION>_<KEY>
 * overrides, typed validation with file:line errors. Knows settings, never what they drive. */
#ifndef SP_CONF_H
#define SP_CONF_H

#include <stddef.h>

#include "sp.h"

/* One setting as written (after interpolation and overrides), kept for the scripts' view. */
struct sp_conf_entry {
    char *section;
    char *key;
    char *value;
    int line; /* 0 when it came from the environment */
};

struct sp_conf {
    char *path; /* the file read, for messages */

    /* [server] */
    int production;
    char *host;
    int port;
    int workers; /* resolved: "auto" is the number of cores */
    char *pid_file;
    int shutdown_timeout_ms;

    /* [http] */
    size_t max_body;
    size_t max_header;
    int timeout_s;              /* a body's reads, a response's writes: inactivity */
    int header_timeout_ms;      /* request line and headers, from their first byte */
    int keepalive_timeout_ms;   /* idle between two requests */
    int keepalive_requests;     /* per connection */
    int max_idle_connections;   /* per worker */
    int max_connections;        /* per worker */
    char **cors_origins;
    int ncors;
    int access_log;
    size_t access_log_buffer; /* bytes a worker buffers (0: a write per line) */
    int access_log_flush_ms;  /* the longest a buffered line waits (0: the loop's pass) */
    int trust_proxy;

    /* [database] */
    char *db_url;
    int pool_size;
    int pipeline_depth;
    int queue_size;
    int connect_timeout_ms;
    int statement_timeout_ms;

    /* [auth] */
    char *jwt_secret;
    int jwt_secret_generated;
    long token_lifetime_s;
    long leeway_s;
    int bcrypt_cost;
    int hash_threads;

    /* [scripts] */
    char *scripts_dir;
    char *plugins_dir;
    long instruction_limit;
    long load_instruction_limit; /* a generation's load; 0 in the file means instruction_limit */
    size_t memory_limit;
    int reload_watch;

    /* [cache] */
    int cache_enabled;
    int cache_ttl_ms;
    int cache_max_entries;
    size_t cache_max_size;

    /* [log] */
    int log_level;

    /* [http_client]: outbound calls of the scripts (spacer.http) */
    int http_timeout_s;
    size_t http_max_response;
    int http_max_calls;
    char *http_ca_file; /* "" : the system's bundle */
    int http_verify;

    /* Every setting, core and application sections alike. Application sections (any section
     * the core does not own) are validated by the scripts that declare them. */
    struct sp_conf_entry *entries;
    int nentries;
};

/* Reads .env from the working directory (values not already in the environment), then path.
 * path NULL: spacer.conf in the working directory if present, else built-in defaults.
 * On success *out is the caller's, to free with sp_conf_free(). err says "file:line: message". */
int sp_conf_load(const char *path, struct sp_conf **out, sp_err *err);

/* Same, from a string (for tests); env_file may be NULL. */
int sp_conf_parse(const char *text, const char *name, struct sp_conf **out, sp_err *err);

void sp_conf_free(struct sp_conf *conf); /* NULL is fine */

/* For a reload: reads cur's file again (the same path, .env and SPACER_* overrides) and makes
 * *out, a copy of cur whose application sections are the new file's; the core's own settings
 * keep cur's values (they need a restart). changed gets the core keys written differently in
 * the file now, as "section.key" separated by ", " ("" when none; cut short at cap). On failure
 * err says "file:line: message" and nothing is made. */
int sp_conf_reread(const struct sp_conf *cur, struct sp_conf **out, char *changed, size_t cap,
                   sp_err *err);

/* The entry of an application setting, or NULL. */
const struct sp_conf_entry *sp_conf_find(const struct sp_conf *conf, const char *section,
                                         const char *key);
/* Whether the core owns this section (its keys are checked at parse time). */
int sp_conf_core_section(const char *section);

/* Where `spacer serve` keeps the development JWT secret, relative to the working directory. */
#define SP_DEV_SECRET_PATH "var/jwt_secret"

/* In development with no secret configured (jwt_secret_generated): the secret kept in path
 * replaces the random one, so a restart does not log everyone out and several instances on one
 * database accept each other's tokens. The file is made once (its directory too), mode 0600,
 * from the random secret; later calls read it. Returns 1 when it made the file, 0 when it read
 * it or had nothing to do, -1 with err (unreadable, or not a secret of 32 bytes or more). */
int sp_conf_keep_dev_secret(struct sp_conf *conf, const char *path, sp_err *err);

/* Reads a KEY=VALUE file into the environment without overriding what is set. 0 if absent. */
int sp_conf_read_env_file(const char *path, sp_err *err);

/* Parses .env text (KEY=VALUE lines, "export " and quotes allowed, # comments; KEY is
 * [A-Za-z_][A-Za-z0-9_]*), calling set for each; name is for "name:line: message". */
typedef void (*sp_conf_env_cb)(void *arg, const char *key, const char *value);
int sp_conf_parse_env(const char *text, const char *name, sp_conf_env_cb set, void *arg,
                      sp_err *err);

#endif
