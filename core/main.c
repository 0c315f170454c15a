/* main.c: the `spacer` command: serve, and the tools of operators and integrators. */
#include <errno.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "gen.h"
#include "log.h"
#include "lua_spacer.h"
#include "master.h"
#include "migrate.h"
#include "router.h"
#include "runner.h"

static const char usage[] =
    "usage: spacer [-c spacer.conf] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  serve                    run the server (master and workers)\n"
    "  reload                   reload the scripts and spacer.conf's application sections of\n"
    "                           a running server, print each worker's outcome\n"
    "  check                    load every script into a throw-away generation; report errors\n"
    "  routes                   list every route: method, path, auth, roles, file:line\n"
    "  test [FILE...]           run Lua tests (tests/lua and *_test.lua beside scripts)\n"
    "  migrate [--status]       apply pending sql/migrations, or list them\n"
    "  seed                     load sql/seed.sql (idempotent)\n"
    "  create-admin --email E --name N   create or promote an admin (password on stdin)\n"
    "  hash-password            read a password on stdin, print its bcrypt hash\n"
    "  version                  print the version\n";

static int load_conf(const char *path, struct sp_conf **conf)
{
    sp_err err;

    if (sp_conf_load(path, conf, &err) != 0) {
        fprintf(stderr, "spacer: %s\n", err.msg);
        return -1;
    }
    sp_log_init((*conf)->log_level, "cli");
    return 0;
}

static int need_db(const struct sp_conf *conf)
{
    if (conf->db_url[0] != '\0')
        return 0;
    fprintf(stderr, "spacer: no database configured: set DATABASE_URL or [database] url\n");
    return -1;
}

static int cmd_check(const struct sp_conf *conf, int list)
{
    struct sp_gen *gen = NULL;
    sp_err err;

    if (sp_gen_load(conf, -1, sp_lua_openers, 0, &gen, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int n = sp_router_count(gen->router);
    if (list) {
        for (int i = 0; i < n; i++) {
            struct sp_route *rt = sp_router_at(gen->router, i);
            char roles[256] = "";
            size_t len = 0;
            for (int k = 0; k < rt->nroles && len < sizeof(roles) - 40; k++)
                len += (size_t)snprintf(roles + len, sizeof(roles) - len, "%s%s", k ? "," : "",
                                        rt->roles[k]);
            printf("%-7s %-48s %-5s %-20s %s%s\n", rt->method, rt->pattern,
                   rt->auth ? "auth" : "-", rt->nroles ? roles : "-", rt->source,
                   rt->compat ? " (compat)" : "");
        }
    } else {
        printf("ok: %d routes loaded in %.1f ms\n", n, gen->load_us / 1000.0);
    }
    sp_gen_unref(gen);
    return 0;
}

static int cmd_reload(const struct sp_conf *conf)
{
    char path[512], *out = NULL;
    sp_err err;
    int ok;

    sp_master_ctl_path(conf, path, sizeof(path));
    if (sp_master_request_reload(path, &out, &err) != 0) {
        fprintf(stderr, "spacer reload: %s\n", err.msg);
        return 1;
    }
    fputs(out, stdout);
    ok = strstr(out, "\"ok\":false") == NULL;
    free(out);
    return ok ? 0 : 1;
}

/* Reads one line from stdin; without echo when stdin is a terminal. */
static int read_password(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO);

    if (tty) {
        fprintf(stderr, "%s", prompt);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char *line = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fprintf(stderr, "\n");
    }
    if (line == NULL)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int cmd_hash_password(const struct sp_conf *conf)
{
    char pw[256], hash[128];
    sp_err err;

    if (read_password("password: ", pw, sizeof(pw)) != 0 || pw[0] == '\0') {
        fprintf(stderr, "spacer hash-password: no password on standard input\n");
        return 1;
    }
    if (sp_password_hash(pw, strlen(pw), conf->bcrypt_cost, hash, sizeof(hash), &err) != 0) {
        fprintf(stderr, "spacer hash-password: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", hash);
    return 0;
}

static int cmd_create_admin(const struct sp_conf *conf, int argc, char **argv)
{
    const char *keys[3] = {"email", "name", "password"}, *values[3] = {NULL, NULL, NULL};
    char pw[256];

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--email") == 0 && i + 1 < argc)
            values[0] = argv[++i];
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            values[1] = argv[++i];
        else {
            fprintf(stderr, "spacer create-admin: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (values[0] == NULL || values[1] == NULL) {
        fprintf(stderr, "usage: spacer create-admin --email E --name N  (password on stdin)\n");
        return 2;
    }
    if (read_password("password: ", pw, sizeof(pw)) != 0) {
        fprintf(stderr, "spacer create-admin: no password on standard input\n");
        return 1;
    }
    values[2] = pw;
    if (need_db(conf) != 0)
        return 1;
    return sp_runner_command(conf, "create_admin", 3, keys, values);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL, *cmd;
    struct sp_conf *conf = NULL;
    sp_err err;
    int rc = 1;

    if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
        conf_path = argv[2];
        argc -= 2;
        argv += 2;
    }
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("spacer %s\n", SP_VERSION);
        return 0;
    }
    /* Other threads (hashing) hand results to the loop: libevent must know about threads. */
    evthread_use_pthreads();
    if (load_conf(conf_path, &conf) != 0) {
        if (strcmp(cmd, "reload") == 0)
            fprintf(stderr, "spacer reload: the running server was not asked to reload; it "
                            "keeps serving what it has\n");
        return 1;
    }

    if (strcmp(cmd, "serve") == 0) {
        int made = sp_conf_keep_dev_secret(conf, SP_DEV_SECRET_PATH, &err);
        if (made < 0) {
            fprintf(stderr, "spacer: %s\n", err.msg);
        } else {
            if (!conf->production && made)
                sp_log(SP_LOG_WARN, "no JWT secret configured: made a development one in %s; "
                       "instances started here share it", SP_DEV_SECRET_PATH);
            rc = sp_master_run(conf);
        }
    } else if (strcmp(cmd, "reload") == 0) {
        rc = cmd_reload(conf);
    } else if (strcmp(cmd, "check") == 0) {
        rc = cmd_check(conf, 0);
    } else if (strcmp(cmd, "routes") == 0) {
        rc = cmd_check(conf, 1);
    } else if (strcmp(cmd, "test") == 0) {
        rc = need_db(conf) ? 1 : sp_runner_test(conf, argc - 2, argv + 2);
    } else if (strcmp(cmd, "migrate") == 0) {
        int status = argc > 2 && strcmp(argv[2], "--status") == 0;
        if (need_db(conf) == 0 &&
            sp_migrate(conf->db_url, "sql/migrations", status, stdout, &err) != 0)
            fprintf(stderr, "spacer migrate: %s\n", err.msg);
        else
            rc = conf->db_url[0] ? 0 : 1;
    } else if (strcmp(cmd, "seed") == 0) {
        if (need_db(conf) == 0 && sp_seed(conf->db_url, "sql/seed.sql", stdout, &err) != 0)
            fprintf(stderr, "spacer seed: %s\n", err.msg);
        else
            rc = conf->db_url[0] ? 0 : 1;
    } else if (strcmp(cmd, "create-admin") == 0) {
        rc = cmd_create_admin(conf, argc - 2, argv + 2);
    } else if (strcmp(cmd, "hash-password") == 0) {
        rc = cmd_hash_password(conf);
    } else {
        fprintf(stderr, "spacer: unknown command \"%s\"\n\n%s", cmd, usage);
        rc = 2;
    }
    sp_conf_free(conf);
    return rc;
}
