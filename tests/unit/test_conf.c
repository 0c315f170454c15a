/* test_conf.c: core/conf.c: spacer.conf parsing (every core key, comments, quotes, ${VAR}
 * interpolation, SPACER_* overrides), file:line errors, application sections, the JWT secret
 * policy, database fallbacks and .env files. The environment is cleared before each test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

#define NAME     "t.conf"
#define SECRET40 "0123456789abcdef0123456789abcdef01234567"

extern char **environ;

/* Variables the tests set themselves, besides SPACER_*. */
static const char *test_vars[] = {
    "JWT_SECRET_KEY", "DATABASE_URL", "DB_NAME",   "DB_USER",     "DB_PASSWORD",
    "DB_HOST",        "DB_PORT",      "SP_T_HOST", "SP_T_USER",   "SP_T_EMPTY",
    "SP_T_PORT",      "SP_T_CUR",     "SP_T_A",    "SP_T_B",      "SP_T_C",
    "SP_T_REAL",      "SP_T_EMPTYV",  "SP_T_EXP",  "SP_T_SPACED", "SP_T_LOADPORT",
    "SP_T_LONG",      "SP_T_AFTER",
};

/* ---- fixture and helpers ------------------------------------------------- */

static void clear_env(void)
{
    char name[256];
    int again = 1;

    for (size_t i = 0; i < SP_ARRAY_LEN(test_vars); i++)
        unsetenv(test_vars[i]);
    /* unsetenv changes environ, so start over after each removal */
    while (again) {
        again = 0;
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (strncmp(*e, "SPACER_", 7) != 0 || eq == NULL || (size_t)(eq - *e) >= sizeof(name))
                continue;
            memcpy(name, *e, (size_t)(eq - *e));
            name[eq - *e] = '\0';
            unsetenv(name);
            again = 1;
            break;
        }
    }
}

static int setup(void **state)
{
    SP_UNUSED(state);
    clear_env();
    return 0;
}

static int teardown(void **state)
{
    SP_UNUSED(state);
    clear_env();
    return 0;
}

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static struct sp_conf *parse_ok(const char *text)
{
    struct sp_conf *c = NULL;
    sp_err err = {{0}};

    if (sp_conf_parse(text, NAME, &c, &err) != 0)
        fail_msg("parsing failed: %s\n--- text:\n%s", err.msg, text);
    assert_non_null(c);
    return c;
}

/* Asserts text is rejected with exactly the message want, or one containing it (part). */
static void parse_fails(const char *text, const char *want, int exact)
{
    struct sp_conf *c = NULL;
    sp_err err = {{0}};

    if (sp_conf_parse(text, NAME, &c, &err) == 0) {
        sp_conf_free(c);
        fail_msg("expected an error \"%s\" for:\n%s", want, text);
    }
    assert_null(c);
    if (exact ? strcmp(err.msg, want) != 0 : strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\", expected %s \"%s\"", err.msg, exact ? "exactly" : "it to contain",
                 want);
}

static void
entry_is(const struct sp_conf *c, const char *section, const char *key, const char *value, int line)
{
    const struct sp_conf_entry *e = sp_conf_find(c, section, key);

    if (e == NULL)
        fail_msg("no entry [%s] %s", section, key);
    assert_string_equal(e->section, section);
    assert_string_equal(e->key, key);
    assert_string_equal(e->value, value);
    assert_int_equal(e->line, line);
}

/* Writes text to a new temporary file; the caller unlinks and frees the path. */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/spacer-test-conf-XXXXXX");
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* ---- defaults and a full file -------------------------------------------- */

static void test_defaults(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c = parse_ok("");

    assert_string_equal(c->path, NAME);
    assert_int_equal(c->production, 0);
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 5000);
    assert_int_equal(c->workers, cores());
    assert_string_equal(c->pid_file, "var/spacer.pid");
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->max_body, 1024 * 1024);
    assert_int_equal(c->max_header, 16 * 1024);
    assert_int_equal(c->timeout_s, 30);
    assert_int_equal(c->ncors, 0);
    assert_null(c->cors_origins);
    assert_int_equal(c->access_log, 1);
    assert_int_equal(c->access_log_buffer, 64 * 1024);
    assert_int_equal(c->access_log_flush_ms, 1000);
    assert_int_equal(c->trust_proxy, 0);
    assert_string_equal(c->db_url, "");
    assert_int_equal(c->pool_size, 8);
    assert_int_equal(c->pipeline_depth, 4);
    assert_int_equal(c->queue_size, 1024);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->statement_timeout_ms, 30000);
    assert_int_equal(c->token_lifetime_s, 86400);
    assert_int_equal(c->leeway_s, 30);
    assert_int_equal(c->bcrypt_cost, 12);
    assert_int_equal(c->hash_threads, cores()); /* 0 means one per core */
    assert_string_equal(c->scripts_dir, "scripts");
    assert_string_equal(c->plugins_dir, "plugins");
    assert_int_equal(c->instruction_limit, 10000000);
    assert_int_equal(c->load_instruction_limit, 10000000); /* 0: as instruction_limit */
    assert_int_equal(c->memory_limit, 256UL * 1024 * 1024);
    assert_int_equal(c->reload_watch, 0);
    assert_int_equal(c->log_level, 1); /* info */
    assert_int_equal(c->nentries, 0);  /* defaults are not entries */
    assert_null(sp_conf_find(c, "server", "port"));
    sp_conf_free(c);
    sp_conf_free(NULL);
}

static const char good[] = "# Spacer settings\n"          /* 1 */
                           "; another comment style\n"    /* 2 */
                           "\n"                           /* 3 */
                           "[server]\n"                   /* 4 */
                           "env = development\n"          /* 5 */
                           "host = 0.0.0.0\n"             /* 6 */
                           "port = 8080\n"                /* 7 */
                           "workers = 4\n"                /* 8 */
                           "pid_file = /run/spacer.pid\n" /* 9 */
                           "shutdown_timeout = 15\n"      /* 10 */
                           "\n"                           /* 11 */
                           "[http]\n"                     /* 12 */
                           "max_body_size = 2M\n"         /* 13 */
                           "max_header_size = 32K\n"      /* 14 */
                           "timeout = 45\n"               /* 15 */
                           "cors_origins = https://a.example, https://b.example  "
                           "http://localhost:3000\n"             /* 16 */
                           "access_log = off\n"                  /* 17 */
                           "trust_proxy = on\n"                  /* 18 */
                           "\n"                                  /* 19 */
                           "[database]\n"                        /* 20 */
                           "url = postgres://app:pw@db/spacer\n" /* 21 */
                           "pool_size = 16\n"                    /* 22 */
                           "queue_size = 0\n"                    /* 23 */
                           "connect_timeout = 3\n"               /* 24 */
                           "statement_timeout = 20\n"            /* 25 */
                           "\n"                                  /* 26 */
                           "[auth]\n"                            /* 27 */
                           "jwt_secret = " SECRET40 "\n"         /* 28 */
                           "token_lifetime = 3600\n"             /* 29 */
                           "leeway = 5\n"                        /* 30 */
                           "bcrypt_cost = 10\n"                  /* 31 */
                           "hash_threads = 2\n"                  /* 32 */
                           "\n"                                  /* 33 */
                           "[scripts]\n"                         /* 34 */
                           "dir = app/scripts\n"                 /* 35 */
                           "plugins = app/plugins\n"             /* 36 */
                           "instruction_limit = 5000\n"          /* 37 */
                           "memory_limit = 64M\n"                /* 38 */
                           "reload = watch\n"                    /* 39 */
                           "\n"                                  /* 40 */
                           "[log]\n"                             /* 41 */
                           "level = debug\n";                    /* 42 */

static void test_good_file(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c = parse_ok(good);

    assert_int_equal(c->production, 0);
    assert_string_equal(c->host, "0.0.0.0");
    assert_int_equal(c->port, 8080);
    assert_int_equal(c->workers, 4);
    assert_string_equal(c->pid_file, "/run/spacer.pid");
    assert_int_equal(c->shutdown_timeout_ms, 15000);
    assert_int_equal(c->max_body, 2 * 1024 * 1024);
    assert_int_equal(c->max_header, 32 * 1024);
    assert_int_equal(c->timeout_s, 45);
    assert_int_equal(c->ncors, 3);
    assert_string_equal(c->cors_origins[0], "https://a.example");
    assert_string_equal(c->cors_origins[1], "https://b.example");
    assert_string_equal(c->cors_origins[2], "http://localhost:3000");
    assert_int_equal(c->access_log, 0);
    assert_int_equal(c->trust_proxy, 1);
    assert_string_equal(c->db_url, "postgres://app:pw@db/spacer");
    assert_int_equal(c->pool_size, 16);
    assert_int_equal(c->queue_size, 0);
    assert_int_equal(c->connect_timeout_ms, 3000);
    assert_int_equal(c->statement_timeout_ms, 20000);
    assert_string_equal(c->jwt_secret, SECRET40);
    assert_int_equal(c->jwt_secret_generated, 0);
    assert_int_equal(c->token_lifetime_s, 3600);
    assert_int_equal(c->leeway_s, 5);
    assert_int_equal(c->bcrypt_cost, 10);
    assert_int_equal(c->hash_threads, 2);
    assert_string_equal(c->scripts_dir, "app/scripts");
    assert_string_equal(c->plugins_dir, "app/plugins");
    assert_int_equal(c->instruction_limit, 5000);
    assert_int_equal(c->load_instruction_limit, 5000);
    assert_int_equal(c->memory_limit, 64UL * 1024 * 1024);
    assert_int_equal(c->reload_watch, 1);
    assert_int_equal(c->log_level, 0);

    /* every setting is also an entry, with its line */
    assert_int_equal(c->nentries, 28);
    entry_is(c, "server", "env", "development", 5);
    entry_is(c, "server", "port", "8080", 7);
    entry_is(c, "http", "cors_origins",
             "https://a.example, https://b.example  http://localhost:3000", 16);
    entry_is(c, "database", "statement_timeout", "20", 25);
    entry_is(c, "log", "level", "debug", 42);
    sp_conf_free(c);
}

static void test_values_of_each_type(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c;

    c = parse_ok("[server]\nworkers = auto\n[http]\nmax_body_size = 1M\nmax_header_size = 16K\n");
    assert_int_equal(c->workers, cores());
    assert_int_equal(c->max_body, 1048576);
    assert_int_equal(c->max_header, 16384);
    sp_conf_free(c);

    /* the connection limits: defaults, and timeouts written in seconds kept in ms */
    c = parse_ok("[server]\nworkers = 1\n");
    assert_int_equal(c->header_timeout_ms, 10000);
    assert_int_equal(c->keepalive_timeout_ms, 60000);
    assert_int_equal(c->keepalive_requests, 10000);
    assert_int_equal(c->max_idle_connections, 10000);
    assert_int_equal(c->max_connections, 16384);
    sp_conf_free(c);
    c = parse_ok("[http]\nheader_timeout = 1\nkeepalive_timeout = 5\nkeepalive_requests = 3\n"
                 "max_idle_connections = 7\nmax_connections = 9\n");
    assert_int_equal(c->header_timeout_ms, 1000);
    assert_int_equal(c->keepalive_timeout_ms, 5000);
    assert_int_equal(c->keepalive_requests, 3);
    assert_int_equal(c->max_idle_connections, 7);
    assert_int_equal(c->max_connections, 9);
    sp_conf_free(c);

    /* the access log's buffer: a size (0: none) and a duration in ms, s, or seconds alone */
    c = parse_ok("[http]\naccess_log_buffer = 0\naccess_log_flush = 250ms\n");
    assert_int_equal(c->access_log_buffer, 0);
    assert_int_equal(c->access_log_flush_ms, 250);
    sp_conf_free(c);
    c = parse_ok("[http]\naccess_log_buffer = 1M\naccess_log_flush = 2s\n");
    assert_int_equal(c->access_log_buffer, 1024 * 1024);
    assert_int_equal(c->access_log_flush_ms, 2000);
    sp_conf_free(c);
    c = parse_ok("[http]\naccess_log_flush = 3\n");
    assert_int_equal(c->access_log_flush_ms, 3000);
    sp_conf_free(c);
    c = parse_ok("[http]\naccess_log_flush = 0\n");
    assert_int_equal(c->access_log_flush_ms, 0);
    sp_conf_free(c);

    c = parse_ok("[http]\nmax_body_size = 512kb\nmax_header_size = 2048\n"
                 "[scripts]\nmemory_limit = 1G\nload_instruction_limit = 50000000\n");
    assert_int_equal(c->max_body, 512 * 1024);
    assert_int_equal(c->max_header, 2048);
    assert_int_equal(c->memory_limit, 1024UL * 1024 * 1024);
    assert_int_equal(c->load_instruction_limit, 50000000);
    assert_int_equal(c->instruction_limit, 10000000);
    sp_conf_free(c);

    /* on/off and friends, any case */
    static const struct {
        const char *text;
        int want;
    } bools[] = {{"on", 1},    {"off", 0}, {"yes", 1}, {"no", 0}, {"true", 1},
                 {"false", 0}, {"1", 1},   {"0", 0},   {"ON", 1}, {"Off", 0}};
    for (size_t i = 0; i < SP_ARRAY_LEN(bools); i++) {
        char text[100];
        snprintf(text, sizeof(text), "[http]\ntrust_proxy = %s\naccess_log = %s\n", bools[i].text,
                 bools[i].text);
        c = parse_ok(text);
        assert_int_equal(c->trust_proxy, bools[i].want);
        assert_int_equal(c->access_log, bools[i].want);
        sp_conf_free(c);
    }

    static const char *levels[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        char text[100];
        snprintf(text, sizeof(text), "[log]\nlevel = %s\n", levels[i]);
        c = parse_ok(text);
        assert_int_equal(c->log_level, i);
        sp_conf_free(c);
    }

    c = parse_ok("[server]\nport = 1\nworkers = 256\nshutdown_timeout = 0\n"
                 "[database]\nstatement_timeout = 3600\nconnect_timeout = 600\n"
                 "[scripts]\nreload = manual\n");
    assert_int_equal(c->port, 1);
    assert_int_equal(c->workers, 256);
    assert_int_equal(c->shutdown_timeout_ms, 0);
    assert_int_equal(c->statement_timeout_ms, 3600000);
    assert_int_equal(c->connect_timeout_ms, 600000);
    assert_int_equal(c->reload_watch, 0);
    sp_conf_free(c);

    c = parse_ok("[server]\nport = 65535\n[http]\ncors_origins = https://only.example\n");
    assert_int_equal(c->port, 65535);
    assert_int_equal(c->ncors, 1);
    assert_string_equal(c->cors_origins[0], "https://only.example");
    sp_conf_free(c);

    /* a later value replaces the earlier one, list included */
    c = parse_ok("[http]\ncors_origins = a b c\ncors_origins = d\n[server]\nport = 1\nport = 2\n");
    assert_int_equal(c->ncors, 1);
    assert_string_equal(c->cors_origins[0], "d");
    assert_int_equal(c->port, 2);
    entry_is(c, "server", "port", "2", 6);
    sp_conf_free(c);
}

static void test_comments_quotes_and_layout(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c = parse_ok("   # indented comment\n"
                                 "\t; indented comment\n"
                                 "[ server ]\n"
                                 "  host   =   \"  spaced  \"  \n"
                                 "pid_file='a # not a comment'\n"
                                 "port=5001\r\n"
                                 "[app]\n"
                                 "note = \"unbalanced\n"
                                 "empty =\n"
                                 "quoted_empty = \"\"\n"
                                 "mixed = 'a\"\n"
                                 "eq = a=b=c\n"
                                 "# port = 1\n"
                                 "; port = 2\n");

    assert_string_equal(c->host, "  spaced  ");
    assert_string_equal(c->pid_file, "a # not a comment");
    assert_int_equal(c->port, 5001);
    entry_is(c, "server", "host", "  spaced  ", 4);
    entry_is(c, "app", "note", "\"unbalanced", 8);
    entry_is(c, "app", "empty", "", 9);
    entry_is(c, "app", "quoted_empty", "", 10);
    entry_is(c, "app", "mixed", "'a\"", 11);
    entry_is(c, "app", "eq", "a=b=c", 12);
    assert_int_equal(c->nentries, 8);
    sp_conf_free(c);

    /* CRLF files keep their line numbers */
    parse_fails("[server]\r\n\r\nport = x\r\n", NAME ":3: server.port must be a number", 0);
}

static void test_interpolation(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c;

    setenv("SP_T_HOST", "db.internal", 1);
    setenv("SP_T_EMPTY", "", 1);
    setenv("SP_T_PORT", "6100", 1);
    c = parse_ok(
        "[database]\n"
        "url = postgres://${SP_T_USER:-app}@${SP_T_HOST}/x?a=${SP_T_UNSET}&b=${SP_T_EMPTY:-d}\n"
        "[server]\n"
        "port = ${SP_T_PORT}\n"
        "host = \"${SP_T_HOST}\"\n"
        "pid_file = $HOME/cost $5 ${SP_T_EMPTY}end\n"
        "[pricing]\n"
        "currency = ${SP_T_CUR:-KES}\n"
        "fallback = ${SP_T_HOST:-unused}\n"
        "dash = ${SP_T_CUR:-a-b:-c}\n");
    assert_string_equal(c->db_url, "postgres://app@db.internal/x?a=&b=d");
    assert_int_equal(c->port, 6100);
    assert_string_equal(c->host, "db.internal");
    assert_string_equal(c->pid_file, "$HOME/cost $5 end");
    entry_is(c, "pricing", "currency", "KES", 8);
    entry_is(c, "pricing", "fallback", "db.internal", 9);
    entry_is(c, "pricing", "dash", "a-b:-c", 10);
    entry_is(c, "server", "port", "6100", 4); /* the entry keeps the interpolated value */
    sp_conf_free(c);

    /* an interpolated value is validated like a written one */
    setenv("SP_T_PORT", "many", 1);
    parse_fails("[server]\nport = ${SP_T_PORT}\n",
                NAME ":2: server.port must be a number from 1 to 65535, not \"many\"", 1);
    unsetenv("SP_T_PORT");
    c = parse_ok("[server]\nport = ${SP_T_PORT:-5005}\n");
    assert_int_equal(c->port, 5005);
    sp_conf_free(c);
    parse_fails("[server]\n\nhost = ${SP_T_HOST\n", NAME ":3: unterminated ${ in value", 1);
}

/* ---- the environment ----------------------------------------------------- */

static void test_env_overrides(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c;

    setenv("SPACER_SERVER_PORT", "6000", 1);
    setenv("SPACER_HTTP_MAX_BODY_SIZE", "4M", 1);
    setenv("SPACER_SERVER_PID_FILE", "/tmp/x.pid", 1);
    setenv("SPACER_PRICING_VAT_PERCENT", "20", 1);
    setenv("SPACER_OTHER_THING", "ignored", 1); /* a section nobody declared */
    setenv("SPACER_TEST_DATABASE_URL", "postgres://test", 1);
    setenv("SPACER_NOUNDERSCORE", "x", 1);
    setenv("SP_T_HOST", "from-var", 1);
    setenv("SPACER_SERVER_HOST", "${SP_T_HOST}", 1);
    setenv("SPACER_HTTP_CLIENT_TIMEOUT", "3", 1);
    setenv("SPACER_HTTP_CLIENT_MAX_CALLS_PER_REQUEST", "2", 1);
    setenv("SPACER_PAYMENTS_STRIPE_SECRET_KEY", "sk_env", 1);
    c = parse_ok("[server]\nport = 5000\n[pricing]\nvat_percent = 16\n"
                 "[payments.stripe]\nsecret_key = sk_file\n");
    unsetenv("SPACER_HTTP_CLIENT_TIMEOUT");
    unsetenv("SPACER_HTTP_CLIENT_MAX_CALLS_PER_REQUEST");
    unsetenv("SPACER_PAYMENTS_STRIPE_SECRET_KEY");
    assert_int_equal(c->port, 6000); /* the environment beats the file */
    assert_int_equal(c->max_body, 4 * 1024 * 1024);
    assert_string_equal(c->pid_file, "/tmp/x.pid");
    assert_string_equal(c->host, "from-var");
    entry_is(c, "server", "port", "6000", 0);
    entry_is(c, "pricing", "vat_percent", "20", 0);
    /* sections with an underscore, or a dot written as one */
    assert_int_equal(c->http_timeout_s, 3);
    assert_int_equal(c->http_max_calls, 2);
    entry_is(c, "payments.stripe", "secret_key", "sk_env", 0);
    assert_null(sp_conf_find(c, "other", "thing"));
    assert_null(sp_conf_find(c, "test", "database_url"));
    assert_string_equal(c->db_url, "");
    sp_conf_free(c);

    /* also without the key in the file, and for workers = auto */
    setenv("SPACER_SERVER_WORKERS", "auto", 1);
    c = parse_ok("");
    assert_int_equal(c->port, 6000);
    assert_int_equal(c->workers, cores());
    sp_conf_free(c);
    clear_env();

    /* a bad override is an error naming the variable */
    setenv("SPACER_SERVER_PORT", "abc", 1);
    parse_fails("[server]\nport = 5000\n",
                "environment SPACER_SERVER_PORT:0: server.port must be a number from 1 to 65535, "
                "not \"abc\"",
                1);
    setenv("SPACER_SERVER_PORT", "70000", 1);
    parse_fails("", "SPACER_SERVER_PORT", 0);
    clear_env();
    setenv("SPACER_SERVER_PROT", "1", 1);
    parse_fails("", "unknown key \"prot\" in [server]", 0);
    clear_env();
    setenv("SPACER_SCRIPTS_RELOAD", "sometimes", 1);
    parse_fails("", "scripts.reload must be manual or watch", 0);
}

static void test_database_fallbacks(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c;

    setenv("DATABASE_URL", "postgres://env/db", 1);
    c = parse_ok("");
    assert_string_equal(c->db_url, "postgres://env/db");
    sp_conf_free(c);
    c = parse_ok("[database]\nurl = postgres://file/db\n"); /* the file wins */
    assert_string_equal(c->db_url, "postgres://file/db");
    sp_conf_free(c);

    /* the old deployment's DB_* variables, when there is no URL at all */
    setenv("DB_NAME", "spacer", 1);
    c = parse_ok("");
    assert_string_equal(c->db_url, "postgres://env/db"); /* DATABASE_URL first */
    sp_conf_free(c);
    unsetenv("DATABASE_URL");
    c = parse_ok("");
    assert_string_equal(c->db_url,
                        "dbname='spacer' user='' password='' host='localhost' port='5432'");
    sp_conf_free(c);
    setenv("DB_USER", "app", 1);
    setenv("DB_PASSWORD", "it's a \\ secret", 1);
    setenv("DB_HOST", "db.internal", 1);
    setenv("DB_PORT", "6543", 1);
    c = parse_ok("");
    assert_string_equal(c->db_url, "dbname='spacer' user='app' password='it\\'s a \\\\ secret' "
                                   "host='db.internal' port='6543'");
    sp_conf_free(c);

    /* a password that tries to add its own parameters stays one value */
    setenv("DB_PASSWORD", "x' host='evil", 1);
    c = parse_ok("");
    assert_string_equal(c->db_url, "dbname='spacer' user='app' password='x\\' host=\\'evil' "
                                   "host='db.internal' port='6543'");
    sp_conf_free(c);

    setenv("DB_NAME", "", 1);
    c = parse_ok("");
    assert_string_equal(c->db_url, "");
    sp_conf_free(c);
}

static void test_env_file(void **state)
{
    SP_UNUSED(state);
    sp_err err = {{0}};
    char *path = temp_file("# the old deployment's variables\n"
                           "\n"
                           "export SP_T_A=alpha\n"
                           "SP_T_B = \"quoted value\"\n"
                           "SP_T_C='single # kept'\n"
                           "SP_T_REAL=from-file\n"
                           "SP_T_EMPTYV=\n"
                           "SP_T_EXP=${NOT_EXPANDED}\n"
                           "  SP_T_SPACED  =  padded  \n");

    setenv("SP_T_REAL", "from-env", 1);
    assert_int_equal(sp_conf_read_env_file(path, &err), 0);
    assert_string_equal(getenv("SP_T_A"), "alpha");
    assert_string_equal(getenv("SP_T_B"), "quoted value");
    assert_string_equal(getenv("SP_T_C"), "single # kept");
    assert_string_equal(getenv("SP_T_REAL"), "from-env"); /* the real environment wins */
    assert_non_null(getenv("SP_T_EMPTYV"));
    assert_string_equal(getenv("SP_T_EMPTYV"), "");
    assert_string_equal(getenv("SP_T_EXP"), "${NOT_EXPANDED}");
    assert_string_equal(getenv("SP_T_SPACED"), "padded");

    /* and the file's values feed interpolation */
    struct sp_conf *c = parse_ok("[app]\nwho = ${SP_T_A}-${SP_T_REAL}\n");
    entry_is(c, "app", "who", "alpha-from-env", 2);
    sp_conf_free(c);
    unlink(path);
    free(path);

    /* absent is fine */
    assert_int_equal(sp_conf_read_env_file("/nonexistent/spacer/.env", &err), 0);

    /* a line without = names file and line */
    path = temp_file("SP_T_A=1\n# c\nnot a setting\n");
    assert_int_equal(sp_conf_read_env_file(path, &err), -1);
    char want[300];
    snprintf(want, sizeof(want), "%s:3: expected KEY=VALUE", path);
    assert_string_equal(err.msg, want);
    unlink(path);
    free(path);

    /* a name that is no variable name is refused, not set */
    path = temp_file("SP_T_A=1\nSP T=2\n");
    assert_int_equal(sp_conf_read_env_file(path, &err), -1);
    snprintf(want, sizeof(want), "%s:2: \"SP T\" is not a variable name", path);
    assert_string_equal(err.msg, want);
    unlink(path);
    free(path);

    /* a long value is one value, and the lines after it keep their numbers */
    char *text = malloc(20000);
    assert_non_null(text);
    strcpy(text, "SP_T_LONG=");
    memset(text + 10, 'x', 9000);
    strcpy(text + 9010, "\nSP_T_AFTER=after\nnot a setting\n");
    path = temp_file(text);
    assert_int_equal(sp_conf_read_env_file(path, &err), -1);
    snprintf(want, sizeof(want), "%s:3: expected KEY=VALUE", path);
    assert_string_equal(err.msg, want);
    assert_int_equal(strlen(getenv("SP_T_LONG")), 9000);
    assert_string_equal(getenv("SP_T_AFTER"), "after");
    unlink(path);
    free(path);
    free(text);
}

static void test_load(void **state)
{
    SP_UNUSED(state);
    char cwd[PATH_MAX], dir[] = "/tmp/spacer-test-load-XXXXXX";
    struct sp_conf *c = NULL;
    sp_err err = {{0}};
    FILE *f;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);

    /* no spacer.conf: built-in defaults */
    assert_int_equal(sp_conf_load(NULL, &c, &err), 0);
    assert_string_equal(c->path, "defaults");
    assert_int_equal(c->port, 5000);
    sp_conf_free(c);
    c = NULL;

    f = fopen(".env", "w");
    assert_non_null(f);
    fputs("SP_T_LOADPORT=7001\n", f);
    fclose(f);
    f = fopen("spacer.conf", "w");
    assert_non_null(f);
    fputs("[server]\nport = ${SP_T_LOADPORT}\n\n[pricing]\nvat_percent = 16\n", f);
    fclose(f);
    assert_int_equal(sp_conf_load(NULL, &c, &err), 0);
    assert_string_equal(c->path, "spacer.conf");
    assert_int_equal(c->port, 7001);
    entry_is(c, "pricing", "vat_percent", "16", 5);
    sp_conf_free(c);
    c = NULL;

    f = fopen("bad.conf", "w");
    assert_non_null(f);
    fputs("[server]\nport = 0\n", f);
    fclose(f);
    assert_int_equal(sp_conf_load("bad.conf", &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.msg, "bad.conf:2: server.port must be a number from 1 to 65535, "
                                 "not \"0\"");
    assert_int_equal(sp_conf_load("missing.conf", &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.msg, "missing.conf: No such file or directory");

    /* a NUL byte would end the text early: what follows it would be silently ignored */
    f = fopen("nul.conf", "w");
    assert_non_null(f);
    fwrite("[server]\nport = 7002\n[auth]\njwt_secret = ab\0cd\n", 1, 47, f);
    fclose(f);
    assert_int_equal(sp_conf_load("nul.conf", &c, &err), -1);
    assert_null(c);
    assert_string_equal(err.msg, "nul.conf:4: contains a NUL byte");
    f = fopen("nul.env", "w");
    assert_non_null(f);
    fwrite("SP_T_NUL_A=1\nSP_T_NUL_B=x\0y\n", 1, 28, f);
    fclose(f);
    assert_int_equal(sp_conf_read_env_file("nul.env", &err), -1);
    assert_string_equal(err.msg, "nul.env:2: contains a NUL byte");
    assert_null(getenv("SP_T_NUL_B"));
    unlink("nul.conf");
    unlink("nul.env");

    unlink("bad.conf");
    unlink("spacer.conf");
    unlink(".env");
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* A reload: the application sections come from the file as it is now, the core's settings
 * keep their start-up values, and a core key written differently is named. */
static void test_reread(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c = NULL, *n = NULL;
    sp_err err = {{0}};
    char changed[128];
    char *path = temp_file("[server]\nport = 7100\n[http]\ncors_origins = http://a.test\n"
                           "[pricing]\nvat_percent = 16\n[payments]\nenabled = manual\n");
    FILE *f;

    assert_int_equal(sp_conf_load(path, &c, &err), 0);
    /* unchanged file: same entries, nothing to restart */
    assert_int_equal(sp_conf_reread(c, &n, changed, sizeof(changed), &err), 0);
    assert_string_equal(changed, "");
    entry_is(n, "pricing", "vat_percent", "16", 6);
    sp_conf_free(n);
    n = NULL;

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[server]\nport = 7200\n[http]\ntimeout = 9\n[pricing]\nvat_percent = 20\n"
          "[payments.stripe]\nsecret_key = sk_test\n", f);
    fclose(f);
    assert_int_equal(sp_conf_reread(c, &n, changed, sizeof(changed), &err), 0);
    assert_string_equal(changed, "server.port, http.timeout, http.cors_origins");
    assert_int_equal(n->port, 7100); /* the start-up values */
    assert_int_equal(n->timeout_s, 30);
    assert_int_equal(n->ncors, 1);
    assert_string_equal(n->cors_origins[0], "http://a.test");
    assert_string_equal(n->jwt_secret, c->jwt_secret);
    assert_string_equal(n->path, path);
    entry_is(n, "server", "port", "7100", 2);
    assert_null(sp_conf_find(n, "http", "timeout"));
    entry_is(n, "pricing", "vat_percent", "20", 6);
    entry_is(n, "payments.stripe", "secret_key", "sk_test", 8);
    assert_null(sp_conf_find(n, "payments", "enabled")); /* gone from the file: gone */
    /* cut short, never overrun */
    sp_conf_free(n);
    n = NULL;
    assert_int_equal(sp_conf_reread(c, &n, changed, 12, &err), 0);
    assert_string_equal(changed, "server.port");
    sp_conf_free(n);
    n = NULL;

    /* a file that no longer parses: file:line, nothing made */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[pricing]\nvat_percent = 20\n[payments\n", f);
    fclose(f);
    assert_int_equal(sp_conf_reread(c, &n, NULL, 0, &err), -1);
    assert_null(n);
    char want[300];
    snprintf(want, sizeof(want), "%s:3: malformed section header", path);
    assert_string_equal(err.msg, want);

    sp_conf_free(c);
    unlink(path);
    free(path);
}

/* ---- errors -------------------------------------------------------------- */

static void test_unknown_key(void **state)
{
    SP_UNUSED(state);

    parse_fails("[server]\nport = 5000\n\n# a comment\nprot = 5001\n",
                NAME ":5: unknown key \"prot\" in [server]", 1);
    parse_fails("[http]\nport = 5000\n", NAME ":2: unknown key \"port\" in [http]", 1);
    parse_fails("[log]\nlevel = info\nlevel_x = 1\n", NAME ":3: unknown key \"level_x\" in [log]",
                1);
    parse_fails("[Server]\nport = 1\n[server]\nPort = 1\n",
                NAME ":4: unknown key \"Port\" in [server]", 1);
}

static void test_bad_values(void **state)
{
    SP_UNUSED(state);

    parse_fails("# c\n[server]\nport = 70000\n",
                NAME ":3: server.port must be a number from 1 to 65535, not \"70000\"", 1);
    parse_fails("[server]\nport = 0\n", NAME ":2: server.port must be a number", 0);
    parse_fails("[server]\nport = -1\n", NAME ":2: server.port must be a number", 0);
    parse_fails("[server]\nport = 80x\n", NAME ":2: server.port must be a number", 0);
    parse_fails("[server]\nport =\n", NAME ":2: server.port must be a number", 0);
    parse_fails("[server]\nport = 99999999999999999999\n", NAME ":2: server.port", 0);
    parse_fails("[server]\n\nworkers = many\n",
                NAME ":3: server.workers must be auto or a number from 1 to 256, not \"many\"", 1);
    parse_fails("[server]\nworkers = 0\n", NAME ":2: server.workers", 0);
    parse_fails("[http]\n\n\nmax_body_size = 12X\n",
                NAME ":4: http.max_body_size must be a size like 512K or 1M, not \"12X\"", 1);
    parse_fails("[http]\nmax_body_size = M\n", NAME ":2: http.max_body_size", 0);
    parse_fails("[http]\nmax_body_size = -1M\n", NAME ":2: http.max_body_size", 0);
    parse_fails("[http]\nmax_body_size = 1MM\n", NAME ":2: http.max_body_size", 0);
    parse_fails("[http]\nmax_header_size = 512\n", NAME ":2: http.max_header_size", 0);
    parse_fails("[scripts]\nmemory_limit = 99999999999999G\n", NAME ":2: scripts.memory_limit",
                0); /* would overflow */
    parse_fails("[server]\nenv = staging\n",
                NAME ":2: server.env must be development or production, not \"staging\"", 1);
    parse_fails("[server]\nenv = Production\n", NAME ":2: server.env", 0);
    parse_fails("[scripts]\nreload = sometimes\n",
                NAME ":2: scripts.reload must be manual or watch, not \"sometimes\"", 1);
    parse_fails("[http]\naccess_log = maybe\n",
                NAME ":2: http.access_log must be on or off, not \"maybe\"", 1);
    parse_fails("[http]\naccess_log_flush = soon\n",
                NAME ":2: http.access_log_flush must be a duration like 250ms or 1s (at most "
                     "60s), not \"soon\"",
                1);
    parse_fails("[http]\naccess_log_flush = 61s\n", NAME ":2: http.access_log_flush", 0);
    parse_fails("[http]\naccess_log_flush = 60001ms\n", NAME ":2: http.access_log_flush", 0);
    parse_fails("[http]\naccess_log_flush = -1\n", NAME ":2: http.access_log_flush", 0);
    parse_fails("[http]\naccess_log_flush = 1.5s\n", NAME ":2: http.access_log_flush", 0);
    parse_fails("[http]\naccess_log_flush = 5m\n", NAME ":2: http.access_log_flush", 0);
    parse_fails("[http]\naccess_log_buffer = 17M\n", NAME ":2: http.access_log_buffer", 0);
    parse_fails("[log]\nlevel = verbose\n",
                NAME ":2: log.level must be debug, info, warn or error, not \"verbose\"", 1);
    parse_fails("[auth]\nbcrypt_cost = 3\n", NAME ":2: auth.bcrypt_cost", 0);
    parse_fails("[auth]\ntoken_lifetime = 59\n", NAME ":2: auth.token_lifetime", 0);
    parse_fails("[scripts]\ninstruction_limit = 999\n", NAME ":2: scripts.instruction_limit", 0);
    parse_fails("[scripts]\nload_instruction_limit = 999\n",
                NAME ":2: scripts.load_instruction_limit must be 0 (as instruction_limit) or from "
                     "1000",
                0);
    parse_fails("[server]\nshutdown_timeout = 3601\n", NAME ":2: server.shutdown_timeout", 0);
}

static void test_malformed_lines(void **state)
{
    SP_UNUSED(state);

    parse_fails("[server\nport = 1\n", NAME ":1: malformed section header", 1);
    parse_fails("\n[]\n", NAME ":2: malformed section header", 1);
    parse_fails("[server] # comment\n", NAME ":1: malformed section header", 1);
    parse_fails("[server]]\n", NAME ":1: malformed section header", 1);
    parse_fails("[\n", NAME ":1: malformed section header", 1);
    parse_fails("[server]\nport 5000\n", NAME ":2: expected key = value", 1);
    parse_fails("[server]\n\n\njust words\n", NAME ":4: expected key = value", 1);
    parse_fails("port = 5000\n[server]\n", NAME ":1: setting outside of a [section]", 1);
    parse_fails("# only a comment first\n\nport = 5000\n",
                NAME ":3: setting outside of a [section]", 1);
    parse_fails("[server]\n = 5000\n", NAME ":2: missing key before =", 1);
}

static void test_application_sections(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c = parse_ok("[pricing]\n"
                                 "vat_percent = 16\n"
                                 "currency = KES\n"
                                 "anything_goes = not validated here\n"
                                 "\n"
                                 "[server]\n"
                                 "port = 5001\n"
                                 "\n"
                                 "[pricing]\n"
                                 "rounding = up\n"
                                 "[notifications]\n"
                                 "port = also fine\n");

    entry_is(c, "pricing", "vat_percent", "16", 2);
    entry_is(c, "pricing", "currency", "KES", 3);
    entry_is(c, "pricing", "anything_goes", "not validated here", 4);
    entry_is(c, "pricing", "rounding", "up", 10);
    entry_is(c, "notifications", "port", "also fine", 12);
    entry_is(c, "server", "port", "5001", 7);
    assert_int_equal(c->port, 5001);
    assert_null(sp_conf_find(c, "pricing", "nope"));
    assert_null(sp_conf_find(c, "nope", "vat_percent"));
    assert_null(sp_conf_find(c, "server", "vat_percent"));
    assert_int_equal(c->nentries, 6);
    sp_conf_free(c);

    assert_true(sp_conf_core_section("server"));
    assert_true(sp_conf_core_section("http"));
    assert_true(sp_conf_core_section("database"));
    assert_true(sp_conf_core_section("auth"));
    assert_true(sp_conf_core_section("scripts"));
    assert_true(sp_conf_core_section("log"));
    assert_false(sp_conf_core_section("pricing"));
    assert_false(sp_conf_core_section("Server"));
    assert_false(sp_conf_core_section(""));
}

/* ---- the JWT secret ------------------------------------------------------ */

static void test_production_secret_policy(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *c;

    parse_fails("[server]\nenv = production\n", NAME ": no JWT secret in production", 0);
    parse_fails("[server]\nenv = production\n", "openssl rand", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = change-me\n",
                "well-known placeholder", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = change-me\n", "openssl rand", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = CHANGE-ME\n",
                "well-known placeholder", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = super-secret-jwt-key\n",
                "openssl rand", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = 0123456789\n",
                "shorter than 32 bytes", 0);
    parse_fails("[server]\nenv = production\n[auth]\njwt_secret = 0123456789\n", "openssl rand", 0);
    parse_fails(
        "[server]\nenv = production\n[auth]\njwt_secret = 0123456789abcdef0123456789abcde\n",
        "shorter than 32 bytes", 0); /* 31 */

    c = parse_ok("[server]\nenv = production\n[auth]\njwt_secret = " SECRET40 "\n");
    assert_int_equal(c->production, 1);
    assert_string_equal(c->jwt_secret, SECRET40);
    assert_int_equal(c->jwt_secret_generated, 0);
    sp_conf_free(c);
    c = parse_ok("[server]\nenv = production\n[auth]\njwt_secret = "
                 "0123456789abcdef0123456789abcdef\n"); /* exactly 32 */
    sp_conf_free(c);

    /* from JWT_SECRET_KEY, as the old deployment set it */
    setenv("JWT_SECRET_KEY", SECRET40, 1);
    c = parse_ok("[server]\nenv = production\n");
    assert_string_equal(c->jwt_secret, SECRET40);
    assert_int_equal(c->jwt_secret_generated, 0);
    sp_conf_free(c);
    c = parse_ok("[server]\nenv = production\n[auth]\njwt_secret = "
                 "file-secret-file-secret-file-secret-1234\n"); /* the file wins */
    assert_string_equal(c->jwt_secret, "file-secret-file-secret-file-secret-1234");
    sp_conf_free(c);
    setenv("JWT_SECRET_KEY", "secret", 1);
    parse_fails("[server]\nenv = production\n", "well-known placeholder", 0);
    setenv("JWT_SECRET_KEY", "", 1);
    parse_fails("[server]\nenv = production\n", "no JWT secret in production", 0);

    /* production through the environment is held to the same policy */
    unsetenv("JWT_SECRET_KEY");
    setenv("SPACER_SERVER_ENV", "production", 1);
    parse_fails("", "openssl rand", 0);
}

static void test_development_generates_secret(void **state)
{
    SP_UNUSED(state);
    struct sp_conf *a = parse_ok("[server]\nenv = development\n"), *b = parse_ok("");

    assert_int_equal(a->production, 0);
    assert_int_equal(a->jwt_secret_generated, 1);
    assert_int_equal(strlen(a->jwt_secret), 64);
    for (const char *p = a->jwt_secret; *p; p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    assert_int_equal(b->jwt_secret_generated, 1);
    assert_int_equal(strlen(b->jwt_secret), 64);
    assert_string_not_equal(a->jwt_secret, b->jwt_secret); /* random each time */
    assert_null(sp_conf_find(a, "auth", "jwt_secret"));
    sp_conf_free(a);
    sp_conf_free(b);

    /* a given secret is used as is, however weak, outside production */
    a = parse_ok("[auth]\njwt_secret = dev\n");
    assert_string_equal(a->jwt_secret, "dev");
    assert_int_equal(a->jwt_secret_generated, 0);
    sp_conf_free(a);
    setenv("JWT_SECRET_KEY", "from-env", 1);
    a = parse_ok("");
    assert_string_equal(a->jwt_secret, "from-env");
    assert_int_equal(a->jwt_secret_generated, 0);
    sp_conf_free(a);
}

static void test_development_secret_is_kept(void **state)
{
    SP_UNUSED(state);
    char dir[] = "/tmp/spacer-conf-XXXXXX", path[256], first[128];
    struct sp_conf *a, *b;
    struct stat st;
    sp_err err = {{0}};
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/var/jwt_secret", dir); /* var/ does not exist yet */
    a = parse_ok("");
    snprintf(first, sizeof(first), "%s", a->jwt_secret);
    assert_int_equal(sp_conf_keep_dev_secret(a, path, &err), 1); /* made */
    assert_string_equal(a->jwt_secret, first);
    assert_int_equal(a->jwt_secret_generated, 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* the next start (another random secret at first) reads the kept one */
    b = parse_ok("");
    assert_string_not_equal(b->jwt_secret, first);
    assert_int_equal(sp_conf_keep_dev_secret(b, path, &err), 0);
    assert_string_equal(b->jwt_secret, first);
    sp_conf_free(b);

    /* a configured secret leaves the file alone, and so does production */
    b = parse_ok("[auth]\njwt_secret = dev\n");
    assert_int_equal(sp_conf_keep_dev_secret(b, path, &err), 0);
    assert_string_equal(b->jwt_secret, "dev");
    sp_conf_free(b);

    /* a file that holds no real secret is an error, not a weak key */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("short\n", f);
    fclose(f);
    b = parse_ok("");
    assert_int_equal(sp_conf_keep_dev_secret(b, path, &err), -1);
    assert_non_null(strstr(err.msg, "not a JWT secret of 32 bytes or more"));
    sp_conf_free(b);
    sp_conf_free(a);
    unlink(path);
    snprintf(path, sizeof(path), "%s/var", dir);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values_of_each_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments_quotes_and_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interpolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_fallbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_application_sections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_production_secret_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_development_generates_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_development_secret_is_kept, setup, teardown),
    };

    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
