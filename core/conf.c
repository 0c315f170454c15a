/* conf.c: reading spacer.conf. The file is INI: [section], key = value, # or ; comments.
 * Order of precedence, lowest first: built-in defaults, the file, SPACER_<SECTION>_<KEY> from
 * the environment. ${VAR} and ${VAR:-default} inside values are read from the environment,
 * which a .env file in the working directory may fill first (the old deployment's variables). */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/rand.h>

enum key_type { K_STR, K_INT, K_BOOL, K_SIZE, K_ENV, K_WORKERS, K_LIST, K_RELOAD, K_LEVEL, K_MS };

struct key_def {
    const char *section;
    const char *key;
    enum key_type type;
    size_t offset;
    const char *def;
    long min, max;
};

#define OFF(f) offsetof(struct sp_conf, f)

/* Every setting the core owns. The shipped spacer.conf documents each one. */
static const struct key_def keys[] = {
    {"server", "env", K_ENV, OFF(production), "development", 0, 0},
    {"server", "host", K_STR, OFF(host), "127.0.0.1", 0, 0},
    {"server", "port", K_INT, OFF(port), "5000", 1, 65535},
    {"server", "workers", K_WORKERS, OFF(workers), "auto", 1, 256},
    {"server", "pid_file", K_STR, OFF(pid_file), "var/spacer.pid", 0, 0},
    {"server", "shutdown_timeout", K_INT, OFF(shutdown_timeout_ms), "10", 0, 3600},
    {"http", "max_body_size", K_SIZE, OFF(max_body), "1M", 1, 1L << 30},
    {"http", "max_header_size", K_SIZE, OFF(max_header), "16K", 1024, 1L << 20},
    /* a body's reads and a response's writes: seconds of silence before 408 / close */
    {"http", "timeout", K_INT, OFF(timeout_s), "30", 1, 3600},
    /* request line and headers, from their first byte: seconds before 408 */
    {"http", "header_timeout", K_INT, OFF(header_timeout_ms), "10", 1, 3600},
    /* an idle keep-alive connection: seconds before it is closed */
    {"http", "keepalive_timeout", K_INT, OFF(keepalive_timeout_ms), "60", 1, 3600},
    /* requests per connection; the last answer says Connection: close */
    {"http", "keepalive_requests", K_INT, OFF(keepalive_requests), "10000", 1, 100000000},
    /* per worker: beyond, the longest idle keep-alive connection is closed */
    {"http", "max_idle_connections", K_INT, OFF(max_idle_connections), "10000", 1, 1000000},
    /* per worker: beyond, a new client gets a JSON 503 (logged once per episode) */
    {"http", "max_connections", K_INT, OFF(max_connections), "16384", 1, 1000000},
    {"http", "cors_origins", K_LIST, OFF(cors_origins), "", 0, 0},
    {"http", "access_log", K_BOOL, OFF(access_log), "on", 0, 0},
    /* bytes of access lines a worker keeps before one write (0: a write per line) */
    {"http", "access_log_buffer", K_SIZE, OFF(access_log_buffer), "64K", 0, 16L << 20},
    /* the longest a buffered line waits (ms; 0: the end of the loop's pass) */
    {"http", "access_log_flush", K_MS, OFF(access_log_flush_ms), "1s", 0, 60000},
    {"http", "trust_proxy", K_BOOL, OFF(trust_proxy), "off", 0, 0},
    {"database", "url", K_STR, OFF(db_url), "", 0, 0},
    {"database", "pool_size", K_INT, OFF(pool_size), "8", 1, 1000},
    /* statements one connection may have in flight when none is idle (1: one at a time) */
    {"database", "pipeline_depth", K_INT, OFF(pipeline_depth), "4", 1, 64},
    {"database", "queue_size", K_INT, OFF(queue_size), "1024", 0, 1000000},
    {"database", "connect_timeout", K_INT, OFF(connect_timeout_ms), "5", 1, 600},
    {"database", "statement_timeout", K_INT, OFF(statement_timeout_ms), "30", 0, 3600},
    {"auth", "jwt_secret", K_STR, OFF(jwt_secret), "", 0, 0},
    {"auth", "token_lifetime", K_INT, OFF(token_lifetime_s), "86400", 60, 31536000},
    {"auth", "leeway", K_INT, OFF(leeway_s), "30", 0, 3600},
    {"auth", "bcrypt_cost", K_INT, OFF(bcrypt_cost), "12", 4, 31},
    {"auth", "hash_threads", K_INT, OFF(hash_threads), "0", 0, 64},
    {"scripts", "dir", K_STR, OFF(scripts_dir), "scripts", 0, 0},
    {"scripts", "plugins", K_STR, OFF(plugins_dir), "plugins", 0, 0},
    {"scripts", "instruction_limit", K_INT, OFF(instruction_limit), "10000000", 1000, LONG_MAX},
    {"scripts", "load_instruction_limit", K_INT, OFF(load_instruction_limit), "0", 0, LONG_MAX},
    {"scripts", "memory_limit", K_SIZE, OFF(memory_limit), "256M", 1L << 20, 1L << 40},
    {"scripts", "reload", K_RELOAD, OFF(reload_watch), "manual", 0, 0},
    {"cache", "enabled", K_BOOL, OFF(cache_enabled), "on", 0, 0},
    {"cache", "ttl", K_INT, OFF(cache_ttl_ms), "5", 0, 3600},
    {"cache", "max_entries", K_INT, OFF(cache_max_entries), "1000", 1, 1000000},
    {"cache", "max_size", K_SIZE, OFF(cache_max_size), "64M", 64L << 10, 1L << 40},
    {"log", "level", K_LEVEL, OFF(log_level), "info", 0, 0},
    {"http_client", "timeout", K_INT, OFF(http_timeout_s), "10", 1, 600},
    {"http_client", "max_response_size", K_SIZE, OFF(http_max_response), "1M", 1024, 1L << 30},
    {"http_client", "max_calls_per_request", K_INT, OFF(http_max_calls), "10", 0, 1000},
    {"http_client", "ca_file", K_STR, OFF(http_ca_file), "", 0, 0},
    {"http_client", "verify", K_BOOL, OFF(http_verify), "on", 0, 0},
};

static const char *core_sections[] = {"server",  "http", "database", "auth",       "scripts",
                                      "cache", "log",  "http_client"};

/* Secrets that appear in tutorials and templates: never good enough for production. */
static const char *placeholder_secrets[] = {
    "super-secret-jwt-key", "your_jwt_secret_key_here", "change-me", "changeme", "secret",
    "your-secret-key", "jwt-secret", "your_secret_key_here", "supersecret", "dev-secret",
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");

    if (p == NULL)
        abort(); /* out of memory at start-up: nothing sensible to do */
    return p;
}

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int sp_conf_core_section(const char *section)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(core_sections); i++)
        if (strcmp(core_sections[i], section) == 0)
            return 1;
    return 0;
}

static const struct key_def *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(keys); i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

/* ${VAR} and ${VAR:-default}. On success *out is the caller's. */
static int interpolate(const char *in, char **out, const char *where, int line, sp_err *err)
{
    size_t cap = strlen(in) + 64, len = 0;
    char *buf = malloc(cap);

    if (buf == NULL)
        abort();
    while (*in) {
        const char *val = NULL;
        char name[128], *def = NULL;
        size_t n;

        if (in[0] != '$' || in[1] != '{') {
            if (len + 2 > cap)
                buf = realloc(buf, cap *= 2);
            buf[len++] = *in++;
            continue;
        }
        const char *end = strchr(in, '}');
        if (end == NULL || (size_t)(end - in - 2) >= sizeof(name)) {
            sp_err_set(err, "%s:%d: unterminated ${ in value", where, line);
            free(buf);
            return -1;
        }
        n = (size_t)(end - in - 2);
        memcpy(name, in + 2, n);
        name[n] = '\0';
        if ((def = strstr(name, ":-")) != NULL) {
            *def = '\0';
            def += 2;
        }
        val = getenv(name);
        if (val == NULL || (*val == '\0' && def != NULL))
            val = def ? def : "";
        n = strlen(val);
        while (len + n + 1 > cap)
            buf = realloc(buf, cap *= 2);
        memcpy(buf + len, val, n);
        len += n;
        in = end + 1;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

static int parse_size(const char *v, long *out)
{
    char *end;
    long n, unit = 1;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || n < 0)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K': unit = 1024L, end++; break;
    case 'M': unit = 1024L * 1024, end++; break;
    case 'G': unit = 1024L * 1024 * 1024, end++; break;
    default: break;
    }
    if (n > LONG_MAX / unit)
        return -1; /* 99999999999G would overflow */
    n *= unit;
    if (toupper((unsigned char)*end) == 'B')
        end++;
    return *end == '\0' ? (*out = n, 0) : -1;
}

static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"on", "yes", "true", "1"}, *no[] = {"off", "no", "false", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* Sets one core key from its textual value. */
static int apply(struct sp_conf *c, const struct key_def *k, const char *v, const char *where,
                 int line, sp_err *err)
{
    char *base = (char *)c;
    long n;
    int b;
    char *end;

    switch (k->type) {
    case K_STR:
        free(*(char **)(base + k->offset));
        *(char **)(base + k->offset) = xstrdup(v);
        return 0;
    case K_INT:
    case K_WORKERS:
        if (k->type == K_WORKERS && strcmp(v, "auto") == 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            *(int *)(base + k->offset) = cores > 0 ? (int)cores : 1;
            return 0;
        }
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || end == v || *end != '\0' || n < k->min || n > k->max) {
            sp_err_set(err, "%s:%d: %s.%s must be %s from %ld to %ld, not \"%s\"", where, line,
                       k->section, k->key, k->type == K_WORKERS ? "auto or a number" : "a number",
                       k->min, k->max, v);
            return -1;
        }
        if (k->offset == OFF(shutdown_timeout_ms) || k->offset == OFF(connect_timeout_ms) ||
            k->offset == OFF(statement_timeout_ms) || k->offset == OFF(header_timeout_ms) ||
            k->offset == OFF(keepalive_timeout_ms) || k->offset == OFF(cache_ttl_ms))
            n *= 1000; /* written in seconds, kept in milliseconds */
        if (k->offset == OFF(load_instruction_limit) && n > 0 && n < 1000) {
            sp_err_set(err, "%s:%d: %s.%s must be 0 (as instruction_limit) or from 1000 to %ld, "
                       "not \"%s\"", where, line, k->section, k->key, k->max, v);
            return -1;
        }
        if (k->offset == OFF(instruction_limit) || k->offset == OFF(load_instruction_limit) ||
            k->offset == OFF(token_lifetime_s) ||
            k->offset == OFF(leeway_s))
            *(long *)(base + k->offset) = n;
        else
            *(int *)(base + k->offset) = (int)n;
        return 0;
    case K_SIZE:
        if (parse_size(v, &n) != 0 || n < k->min || n > k->max) {
            sp_err_set(err, "%s:%d: %s.%s must be a size like 512K or 1M, not \"%s\"", where,
                       line, k->section, k->key, v);
            return -1;
        }
        *(size_t *)(base + k->offset) = (size_t)n;
        return 0;
    case K_BOOL:
        if (parse_bool(v, &b) != 0) {
            sp_err_set(err, "%s:%d: %s.%s must be on or off, not \"%s\"", where, line, k->section,
                       k->key, v);
            return -1;
        }
        *(int *)(base + k->offset) = b;
        return 0;
    case K_ENV:
        if (strcmp(v, "development") != 0 && strcmp(v, "production") != 0) {
            sp_err_set(err, "%s:%d: server.env must be development or production, not \"%s\"",
                       where, line, v);
            return -1;
        }
        c->production = strcmp(v, "production") == 0;
        return 0;
    case K_RELOAD:
        if (strcmp(v, "manual") != 0 && strcmp(v, "watch") != 0) {
            sp_err_set(err, "%s:%d: scripts.reload must be manual or watch, not \"%s\"", where,
                       line, v);
            return -1;
        }
        c->reload_watch = strcmp(v, "watch") == 0;
        return 0;
    case K_LEVEL: {
        static const char *levels[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++)
            if (strcmp(v, levels[i]) == 0)
                return c->log_level = i, 0;
        sp_err_set(err, "%s:%d: log.level must be debug, info, warn or error, not \"%s\"", where,
                   line, v);
        return -1;
    }
    case K_MS: { /* 250ms, 1s, or seconds alone */
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno == 0 && end != v && n >= 0 && n <= k->max) {
            if (strcmp(end, "ms") == 0)
                end += 2;
            else if ((*end == '\0' || strcmp(end, "s") == 0) && n <= k->max / 1000)
                n *= 1000, end += *end != '\0';
            else
                end = (char *)"x";
        }
        if (errno || end == v || *end != '\0' || n < k->min || n > k->max) {
            sp_err_set(err, "%s:%d: %s.%s must be a duration like 250ms or 1s (at most %lds), "
                       "not \"%s\"", where, line, k->section, k->key, k->max / 1000, v);
            return -1;
        }
        *(int *)(base + k->offset) = (int)n;
        return 0;
    }
    case K_LIST: {
        char *copy = xstrdup(v), *save = NULL, *tok;
        free_list(c->cors_origins, c->ncors);
        c->cors_origins = NULL;
        c->ncors = 0;
        for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
            c->cors_origins = realloc(c->cors_origins, sizeof(char *) * (size_t)(c->ncors + 1));
            c->cors_origins[c->ncors++] = xstrdup(tok);
        }
        free(copy);
        return 0;
    }
    }
    return 0;
}

static void add_entry(struct sp_conf *c, const char *section, const char *key, const char *value,
                      int line)
{
    for (int i = 0; i < c->nentries; i++) {
        struct sp_conf_entry *e = &c->entries[i];
        if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0) {
            free(e->value);
            e->value = xstrdup(value);
            e->line = line;
            return;
        }
    }
    c->entries = realloc(c->entries, sizeof(*c->entries) * (size_t)(c->nentries + 1));
    if (c->entries == NULL)
        abort();
    c->entries[c->nentries++] = (struct sp_conf_entry){xstrdup(section), xstrdup(key),
                                                        xstrdup(value), line};
}

const struct sp_conf_entry *sp_conf_find(const struct sp_conf *c, const char *section,
                                         const char *key)
{
    for (int i = 0; i < c->nentries; i++)
        if (strcmp(c->entries[i].section, section) == 0 && strcmp(c->entries[i].key, key) == 0)
            return &c->entries[i];
    return NULL;
}

/* One "key = value" (file or environment). Core keys are checked now; others wait for scripts. */
static int set_value(struct sp_conf *c, const char *section, const char *key, const char *raw,
                     const char *where, int line, sp_err *err)
{
    const struct key_def *k;
    char *value = NULL;
    int rc = -1;

    if (interpolate(raw, &value, where, line, err) != 0)
        return -1;
    if (sp_conf_core_section(section)) {
        if ((k = find_key(section, key)) == NULL) {
            sp_err_set(err, "%s:%d: unknown key \"%s\" in [%s]", where, line, key, section);
            goto done;
        }
        if (apply(c, k, value, where, line, err) != 0)
            goto done;
    }
    add_entry(c, section, key, value, line);
    rc = 0;
done:
    free(value);
    return rc;
}

static int is_placeholder(const char *s)
{
    for (size_t i = 0; i < SP_ARRAY_LEN(placeholder_secrets); i++)
        if (strcasecmp(s, placeholder_secrets[i]) == 0)
            return 1;
    return 0;
}

/* Appends key='value' for libpq, with ' and \ escaped as libpq's key=value syntax wants. */
static void add_pq_param(struct sp_buf *b, const char *key, const char *value)
{
    sp_buf_printf(b, "%s%s='", b->len ? " " : "", key);
    for (; *value; value++) {
        if (*value == '\'' || *value == '\\')
            sp_buf_addc(b, '\\');
        sp_buf_addc(b, *value);
    }
    sp_buf_addc(b, '\'');
}

/* What the settings mean together: database URL fallbacks and the secret policy. */
static int finish(struct sp_conf *c, sp_err *err)
{
    static const char howto[] = "generate one with: openssl rand -hex 32, and set JWT_SECRET_KEY "
                                "or [auth] jwt_secret";
    const char *env;

    if (c->db_url[0] == '\0' && (env = getenv("DATABASE_URL")) != NULL && *env) {
        free(c->db_url);
        c->db_url = xstrdup(env);
    }
    if (c->db_url[0] == '\0' && (env = getenv("DB_NAME")) != NULL && *env) {
        /* The old deployment's variables. Values are quoted for libpq's key=value syntax. */
        struct sp_buf buf = {0};
        const char *user = getenv("DB_USER"), *pass = getenv("DB_PASSWORD");
        const char *host = getenv("DB_HOST"), *port = getenv("DB_PORT");
        add_pq_param(&buf, "dbname", env);
        add_pq_param(&buf, "user", user ? user : "");
        add_pq_param(&buf, "password", pass ? pass : "");
        add_pq_param(&buf, "host", host ? host : "localhost");
        add_pq_param(&buf, "port", port ? port : "5432");
        free(c->db_url);
        c->db_url = xstrdup(buf.data);
        sp_buf_free(&buf);
    }
    if (c->jwt_secret[0] == '\0' && (env = getenv("JWT_SECRET_KEY")) != NULL && *env) {
        free(c->jwt_secret);
        c->jwt_secret = xstrdup(env);
    }
    if (c->production) {
        if (c->jwt_secret[0] == '\0') {
            sp_err_set(err, "%s: no JWT secret in production; %s", c->path, howto);
            return -1;
        }
        if (is_placeholder(c->jwt_secret)) {
            sp_err_set(err, "%s: the JWT secret is a well-known placeholder; %s", c->path, howto);
            return -1;
        }
        if (strlen(c->jwt_secret) < 32) {
            sp_err_set(err, "%s: the JWT secret is shorter than 32 bytes; %s", c->path, howto);
            return -1;
        }
    } else if (c->jwt_secret[0] == '\0') {
        unsigned char raw[32];
        char hex[65];
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            sp_err_set(err, "cannot generate a JWT secret: no randomness");
            return -1;
        }
        for (size_t i = 0; i < sizeof(raw); i++)
            snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        free(c->jwt_secret);
        c->jwt_secret = xstrdup(hex);
        c->jwt_secret_generated = 1;
    }
    if (c->http_ca_file[0] != '\0' && access(c->http_ca_file, R_OK) != 0) {
        sp_err_set(err, "%s: http_client.ca_file %s: %s", c->path, c->http_ca_file,
                   strerror(errno));
        return -1;
    }
    if (c->load_instruction_limit == 0)
        c->load_instruction_limit = c->instruction_limit;
    if (c->hash_threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        c->hash_threads = cores > 0 ? (int)cores : 1;
    }
    return 0;
}

/* Whether name starts with section then '_'; a '.' of the section ([payments.stripe]) is
 * written '_' in a variable's name. */
static int env_prefix(const char *name, const char *section)
{
    for (; *section; section++, name++)
        if (*name != *section && !(*section == '.' && *name == '_'))
            return 0;
    return *name == '_';
}

/* The section the core or the file knows with the longest name that name ("http_client_timeout")
 * starts with, or NULL. Sections may hold underscores themselves. */
static const char *env_section(const struct sp_conf *c, const char *name)
{
    const char *best = NULL;

    for (size_t i = 0; i < SP_ARRAY_LEN(core_sections); i++)
        if (env_prefix(name, core_sections[i]) &&
            (best == NULL || strlen(core_sections[i]) > strlen(best)))
            best = core_sections[i];
    for (int i = 0; i < c->nentries; i++)
        if (env_prefix(name, c->entries[i].section) &&
            (best == NULL || strlen(c->entries[i].section) > strlen(best)))
            best = c->entries[i].section;
    return best;
}

/* SPACER_<SECTION>_<KEY>=value, for every section the file or the core knows. */
static int apply_env_overrides(struct sp_conf *c, sp_err *err)
{
    extern char **environ;

    for (char **e = environ; *e; e++) {
        char name[256], section[64], *eq;
        const char *value, *known;
        size_t slen;

        if (strncmp(*e, "SPACER_", 7) != 0 || (eq = strchr(*e, '=')) == NULL)
            continue;
        if ((size_t)(eq - *e) >= sizeof(name))
            continue;
        memcpy(name, *e + 7, (size_t)(eq - *e - 7));
        name[eq - *e - 7] = '\0';
        value = eq + 1;
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        /* SPACER_TEST_DATABASE_URL and friends belong to others: no known section. */
        if ((known = env_section(c, name)) == NULL || (slen = strlen(known)) >= sizeof(section) ||
            name[slen + 1] == '\0')
            continue;
        memcpy(section, known, slen + 1); /* a copy: set_value may move the entries */
        char where[300];
        snprintf(where, sizeof(where), "environment %.*s", (int)(eq - *e), *e); /* as written */
        if (set_value(c, section, name + slen + 1, value, where, 0, err) != 0)
            return -1;
    }
    return 0;
}

int sp_conf_parse(const char *text, const char *name, struct sp_conf **out, sp_err *err)
{
    struct sp_conf *c = calloc(1, sizeof(*c));
    char *copy = xstrdup(text), *save = NULL, *line, section[64] = "";
    int lineno = 0, rc = -1;

    if (c == NULL)
        abort();
    c->path = xstrdup(name);
    for (size_t i = 0; i < SP_ARRAY_LEN(keys); i++)
        if (apply(c, &keys[i], keys[i].def, "defaults", 0, err) != 0)
            goto done;

    /* strsep keeps empty lines, so line numbers stay right. */
    save = copy;
    while ((line = strsep(&save, "\n")) != NULL) {
        char *s = trim(line), *eq;
        lineno++;
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (end == NULL || end[1] != '\0' || end - s - 1 <= 0 ||
                (size_t)(end - s - 1) >= sizeof(section)) {
                sp_err_set(err, "%s:%d: malformed section header", name, lineno);
                goto done;
            }
            *end = '\0';
            snprintf(section, sizeof(section), "%s", trim(s + 1));
            continue;
        }
        if ((eq = strchr(s, '=')) == NULL) {
            sp_err_set(err, "%s:%d: expected key = value", name, lineno);
            goto done;
        }
        if (section[0] == '\0') {
            sp_err_set(err, "%s:%d: setting outside of a [section]", name, lineno);
            goto done;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0]) {
            value[vl - 1] = '\0';
            value++;
        }
        if (*key == '\0') {
            sp_err_set(err, "%s:%d: missing key before =", name, lineno);
            goto done;
        }
        if (set_value(c, section, key, value, name, lineno, err) != 0)
            goto done;
    }
    if (apply_env_overrides(c, err) != 0 || finish(c, err) != 0)
        goto done;
    *out = c;
    c = NULL;
    rc = 0;
done:
    free(copy);
    sp_conf_free(c);
    return rc;
}

static int env_name_valid(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    while (*++s)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

int sp_conf_parse_env(const char *text, const char *name, sp_conf_env_cb set, void *arg,
                      sp_err *err)
{
    char *copy = xstrdup(text), *save = copy, *line;
    int lineno = 0, rc = -1;

    while ((line = strsep(&save, "\n")) != NULL) {
        char *s = trim(line), *eq, *key, *value;
        size_t vl;
        lineno++;
        if (*s == '\0' || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        if ((eq = strchr(s, '=')) == NULL) {
            sp_err_set(err, "%s:%d: expected KEY=VALUE", name, lineno);
            goto done;
        }
        *eq = '\0';
        key = trim(s);
        value = trim(eq + 1);
        if (!env_name_valid(key)) {
            sp_err_set(err, "%s:%d: \"%.64s\" is not a variable name", name, lineno, key);
            goto done;
        }
        vl = strlen(value);
        if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0]) {
            value[vl - 1] = '\0';
            value++;
        }
        set(arg, key, value);
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

static void set_env(void *arg, const char *key, const char *value)
{
    SP_UNUSED(arg);
    setenv(key, value, 0); /* the real environment wins */
}

int sp_conf_read_env_file(const char *path, sp_err *err)
{
    FILE *f = fopen(path, "r");
    struct sp_buf text = {0};
    char chunk[4096];
    size_t n;
    int rc;

    if (f == NULL)
        return 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sp_buf_add(&text, chunk, n);
    fclose(f);
    const char *nul = text.data ? memchr(text.data, '\0', text.len) : NULL;
    if (nul != NULL) {
        int lineno = 1;
        for (const char *p = text.data; p < nul; p++)
            lineno += *p == '\n';
        sp_err_set(err, "%s:%d: contains a NUL byte", path, lineno);
        sp_buf_free(&text);
        return -1;
    }
    rc = sp_conf_parse_env(text.data ? text.data : "", path, set_env, NULL, err);
    sp_buf_free(&text);
    return rc;
}

int sp_conf_load(const char *path, struct sp_conf **out, sp_err *err)
{
    FILE *f;
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    int rc;

    if (sp_conf_read_env_file(".env", err) != 0)
        return -1;
    if (path == NULL) {
        if (access("spacer.conf", R_OK) != 0)
            return sp_conf_parse("", "defaults", out, err);
        path = "spacer.conf";
    }
    if ((f = fopen(path, "r")) == NULL) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap && (text = realloc(text, cap = (len + n + 1) * 2)) == NULL)
            abort();
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (text == NULL)
        text = xstrdup("");
    text[len] = '\0';
    if (strlen(text) != len) { /* the rest would be silently ignored */
        int line = 1;
        for (const char *p = text; *p; p++)
            line += *p == '\n';
        sp_err_set(err, "%s:%d: contains a NUL byte", path, line);
        free(text);
        return -1;
    }
    rc = sp_conf_parse(text, path, out, err);
    free(text);
    return rc;
}

static const char *entry_value(const struct sp_conf *c, const char *section, const char *key)
{
    const struct sp_conf_entry *e = sp_conf_find(c, section, key);

    return e ? e->value : NULL;
}

int sp_conf_reread(const struct sp_conf *cur, struct sp_conf **out, char *changed, size_t cap,
                   sp_err *err)
{
    struct sp_conf *next = NULL, *c;
    size_t len = 0;

    if (sp_conf_load(strcmp(cur->path, "defaults") == 0 ? NULL : cur->path, &next, err) != 0)
        return -1;
    if (cap > 0)
        changed[0] = '\0';
    for (size_t i = 0; i < SP_ARRAY_LEN(keys); i++) {
        const char *a = entry_value(cur, keys[i].section, keys[i].key);
        const char *b = entry_value(next, keys[i].section, keys[i].key);
        if ((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0))
            continue;
        if (len < cap)
            len += (size_t)snprintf(changed + len, cap - len, "%s%s.%s", len ? ", " : "",
                                    keys[i].section, keys[i].key);
    }
    /* The copy: cur's core settings, cur's core entries, then the new application entries. */
    if ((c = malloc(sizeof(*c))) == NULL)
        abort();
    memcpy(c, cur, sizeof(*c));
    c->path = xstrdup(cur->path);
    for (size_t i = 0; i < SP_ARRAY_LEN(keys); i++)
        if (keys[i].type == K_STR)
            *(char **)((char *)c + keys[i].offset) =
                xstrdup(*(char *const *)((const char *)cur + keys[i].offset));
    c->cors_origins = NULL;
    c->ncors = 0;
    for (int i = 0; i < cur->ncors; i++) {
        c->cors_origins = realloc(c->cors_origins, sizeof(char *) * (size_t)(c->ncors + 1));
        if (c->cors_origins == NULL)
            abort();
        c->cors_origins[c->ncors++] = xstrdup(cur->cors_origins[i]);
    }
    c->entries = NULL;
    c->nentries = 0;
    for (int i = 0; i < cur->nentries; i++)
        if (sp_conf_core_section(cur->entries[i].section))
            add_entry(c, cur->entries[i].section, cur->entries[i].key, cur->entries[i].value,
                      cur->entries[i].line);
    for (int i = 0; i < next->nentries; i++)
        if (!sp_conf_core_section(next->entries[i].section))
            add_entry(c, next->entries[i].section, next->entries[i].key,
                      next->entries[i].value, next->entries[i].line);
    sp_conf_free(next);
    *out = c;
    return 0;
}

/* Reads the kept secret: one line of at least 32 printable bytes. 0, or -1 with err. */
static int read_dev_secret(int fd, const char *path, char **out, sp_err *err)
{
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    size_t len;

    if (n < 0) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf[n] = '\0';
    len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] <= ' ' || buf[i] == 0x7f)
            len = 0;
    if (len < 32 || is_placeholder(buf)) {
        sp_err_set(err, "%s: not a JWT secret of 32 bytes or more; delete it to have a new one "
                        "made, or configure one (JWT_SECRET_KEY or [auth] jwt_secret)",
                   path);
        return -1;
    }
    *out = xstrdup(buf);
    return 0;
}

int sp_conf_keep_dev_secret(struct sp_conf *c, const char *path, sp_err *err)
{
    char dir[512], *slash, *kept = NULL;
    struct stat st;
    int fd, made = 0;

    if (!c->jwt_secret_generated || c->production)
        return 0;
    snprintf(dir, sizeof(dir), "%s", path);
    if ((slash = strrchr(dir, '/')) != NULL) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            sp_err_set(err, "%s: %s", dir, strerror(errno));
            return -1;
        }
    }
    /* O_EXCL: of two instances starting at once, one makes it and the other reads it. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        size_t len = strlen(c->jwt_secret);
        int ok = write(fd, c->jwt_secret, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
        if (close(fd) != 0 || !ok) {
            sp_err_set(err, "%s: cannot write the development JWT secret", path);
            unlink(path);
            return -1;
        }
        made = 1;
    } else if (errno != EEXIST) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (int tries = 0; tries < 50; tries++) { /* the maker may not have written it yet */
        if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
            sp_err_set(err, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (fstat(fd, &st) == 0 && st.st_size == 0 && !made) {
            close(fd);
            usleep(10000);
            continue;
        }
        if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
            fchmod(fd, 0600); /* a secret: its owner's only */
        int rc = read_dev_secret(fd, path, &kept, err);
        close(fd);
        if (rc != 0)
            return -1;
        break;
    }
    if (kept == NULL) {
        sp_err_set(err, "%s: empty", path);
        return -1;
    }
    free(c->jwt_secret);
    c->jwt_secret = kept;
    c->jwt_secret_generated = 0;
    return made;
}

void sp_conf_free(struct sp_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < SP_ARRAY_LEN(keys); i++)
        if (keys[i].type == K_STR)
            free(*(char **)((char *)c + keys[i].offset));
    free_list(c->cors_origins, c->ncors);
    for (int i = 0; i < c->nentries; i++) {
        free(c->entries[i].section);
        free(c->entries[i].key);
        free(c->entries[i].value);
    }
    free(c->entries);
    free(c->path);
    free(c);
}
