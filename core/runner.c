/* runner.c: a worker without HTTP, for Lua that must run with the real API: script tests and
 * command-line tasks. The coroutine machinery is the request's own (sp_req_start), so what
 * passes here behaves the same under the server. */
#include "runner.h"

#include <dirent.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "embed.h"
#include "gen.h"
#include "log.h"
#include "lua_http.h"
#include "lua_spacer.h"
#include "pgpool.h"
#include "req.h"

struct sp_runner {
    struct sp_host w;
    int done, ok;
};

struct sp_host *sp_runner_host(struct sp_runner *r)
{
    return &r->w;
}

lua_State *sp_runner_state(struct sp_runner *r)
{
    return r->w.gen->L;
}

int sp_runner_new(const struct sp_conf *conf, struct sp_runner **out, sp_err *err)
{
    struct sp_runner *r = calloc(1, sizeof(*r));
    struct sp_pool_conf pc = {conf->db_url, 2, 1024, conf->connect_timeout_ms,
                              conf->statement_timeout_ms, 1};

    if (r == NULL) {
        sp_err_set(err, "out of memory");
        return -1;
    }
    r->w.conf = conf;
    r->w.index = 0;
    r->w.pid = getpid();
    signal(SIGPIPE, SIG_IGN); /* as in a worker: a peer that closed is an error, not death */
    if ((r->w.base = event_base_new()) == NULL) {
        sp_err_set(err, "cannot create an event loop");
        goto fail;
    }
    if ((r->w.pool = sp_pool_new(r->w.base, &pc, err)) == NULL)
        goto fail;
    if ((r->w.hasher = sp_hasher_new(r->w.base, 2, err)) == NULL)
        goto fail;
    if (sp_gen_load(conf, 0, sp_lua_openers, 1, &r->w.gen, err) != 0)
        goto fail;
    *out = r;
    return 0;
fail:
    sp_runner_free(r);
    return -1;
}

void sp_runner_free(struct sp_runner *r)
{
    if (r == NULL)
        return;
    sp_req_log_flush(&r->w, 1);
    sp_gen_unref(r->w.gen);
    sp_hasher_free(r->w.hasher);
    sp_jwt_cache_free(r->w.jwt_cache);
    sp_pool_free(r->w.pool);
    sp_httpc_free(r->w.httpc);
    if (r->w.base)
        event_base_free(r->w.base);
    free(r);
}

static void call_done(struct sp_req *req, int ok)
{
    struct sp_runner *r = req->on_done_arg;

    r->done = 1;
    r->ok = ok;
    event_base_loopbreak(req->w->base);
}

int sp_runner_call(struct sp_runner *r, int nargs, sp_err *err)
{
    lua_State *L = r->w.gen->L, *co;
    struct sp_req *req = calloc(1, sizeof(*req));
    int top, n;

    if (req == NULL) {
        sp_err_set(err, "out of memory");
        return -1;
    }
    req->w = &r->w;
    req->gen = r->w.gen;
    req->on_done = call_done;
    req->on_done_arg = r;
    snprintf(req->id, sizeof(req->id), "task");
    co = lua_newthread(L);
    req->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req->co = co;
    sp_gen_set_req(co, req);
    sp_gen_arm_limits(req->gen, co);
    lua_xmove(L, co, nargs + 1);
    top = lua_gettop(L);
    r->done = 0;
    sp_req_start(req, nargs);
    while (!r->done)
        event_base_loop(r->w.base, EVLOOP_ONCE);
    sp_req_release_pins(req);
    if (r->ok) {
        n = lua_gettop(co);
        lua_xmove(co, L, n);
    } else {
        if (req->budget.limit != SP_LIMIT_NONE)
            lua_pushstring(L, req->budget.limit == SP_LIMIT_MEMORY ? "script memory limit exceeded"
                                                            : "script instruction limit exceeded");
        else if (lua_type(co, -1) == LUA_TSTRING) {
            luaL_traceback(L, co, lua_tostring(co, -1), 0);
        } else {
            lua_pushvalue(co, -1);
            lua_xmove(co, L, 1);
        }
    }
    luaL_unref(L, LUA_REGISTRYINDEX, req->co_ref);
    free(req);
    SP_UNUSED(top);
    return r->ok ? 0 : -1;
}

/* ---- spacer test ---------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *_test.lua below dir, sorted. */
static void find_tests(const char *dir, char ***list, int *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    struct stat st;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            find_tests(path, list, n);
        } else if (has_suffix(e->d_name, "_test.lua")) {
            *list = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
            (*list)[(*n)++] = strdup(path);
        }
    }
    closedir(d);
}

/* Short text of an error value at the top of L. */
static const char *error_text(lua_State *L)
{
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "message");
        if (lua_isstring(L, -1)) {
            lua_getfield(L, -2, "sqlstate");
            if (lua_isstring(L, -1)) {
                lua_pushfstring(L, "database error %s: %s", lua_tostring(L, -1),
                                lua_tostring(L, -2));
                return lua_tostring(L, -1);
            }
            lua_pop(L, 1);
            return lua_tostring(L, -1);
        }
        lua_pop(L, 1);
    }
    sp_lua_push_error_text(L, -1); /* a raising __tostring would abort the run */
    return lua_tostring(L, -1);
}

int sp_runner_test(const struct sp_conf *conf, int nfiles, char **files)
{
    struct sp_runner *r = NULL;
    char **list = NULL;
    int n = 0, passed = 0, failed = 0, tests, lib;
    lua_State *L;
    sp_err err;

    if (nfiles > 0) {
        for (int i = 0; i < nfiles; i++) {
            list = realloc(list, sizeof(char *) * (size_t)(n + 1));
            list[n++] = strdup(files[i]);
        }
    } else {
        find_tests("tests/lua", &list, &n);
        find_tests(conf->scripts_dir, &list, &n);
        find_tests(conf->plugins_dir, &list, &n);
        qsort(list, (size_t)n, sizeof(char *), cmp_str);
    }
    if (sp_runner_new(conf, &r, &err) != 0) {
        fprintf(stderr, "spacer test: %s\n", err.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    L = sp_runner_state(r);
    /* The assertion library: its globals go into the sandbox of this throw-away generation. */
    if (luaL_loadbufferx(L, sp_embed_testlib, sizeof(sp_embed_testlib) - 1, "=testlib", "t") ==
        LUA_OK) {
        sp_gen_push_env(r->w.gen);
        lua_setupvalue(L, -2, 1);
    }
    if (lua_gettop(L) == 0 || !lua_isfunction(L, -1) || lua_pcall(L, 0, 2, 0) != LUA_OK) {
        fprintf(stderr, "spacer test: %s\n", lua_tostring(L, -1));
        sp_runner_free(r);
        return 1;
    }
    tests = lua_gettop(L);
    lib = tests - 1;
    for (int i = 0; i < n; i++) {
        if (sp_gen_loadfile(r->w.gen, list[i], &err) != 0) {
            printf("FAIL %s: %s\n", list[i], err.msg);
            failed++;
            continue;
        }
        /* Give this chunk an _ENV that reads the sandbox and adds the test globals. */
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, lib) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4); /* Stack: chunk, env, k */
        }
        lua_pushstring(L, list[i]);
        lua_setfield(L, lib, "_current_file");
        lua_newtable(L);
        sp_gen_push_env(r->w.gen);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        lua_setupvalue(L, -2, 1);
        if (sp_runner_call(r, 0, &err) != 0) {
            printf("FAIL %s: %s\n", list[i], error_text(L));
            failed++;
        }
        lua_settop(L, tests);
    }
    int ntests = (int)lua_rawlen(L, tests);
    for (int i = 1; i <= ntests; i++) {
        lua_rawgeti(L, tests, i);
        lua_getfield(L, -1, "fn");
        if (sp_runner_call(r, 0, &err) == 0) {
            passed++;
        } else {
            const char *why = error_text(L);
            lua_getfield(L, tests + 1, "file");
            lua_getfield(L, tests + 1, "name");
            const char *tb = strstr(why, "\nstack traceback:");
            printf("FAIL %s: %s\n    %.*s\n", lua_tostring(L, -2), lua_tostring(L, -1),
                   tb ? (int)(tb - why) : (int)strlen(why), why);
            failed++;
        }
        lua_settop(L, tests);
    }
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    sp_runner_free(r);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* ---- command-line tasks ------------------------------------------------------------ */

int sp_runner_command(const struct sp_conf *conf, const char *name, int nopts,
                      const char *const *keys, const char *const *values)
{
    struct sp_runner *r = NULL;
    lua_State *L;
    sp_err err;
    int rc = 1;

    if (sp_runner_new(conf, &r, &err) != 0) {
        fprintf(stderr, "spacer: %s\n", err.msg);
        return 1;
    }
    L = sp_runner_state(r);
    {
        char chunk[256];
        snprintf(chunk, sizeof(chunk), "return require(\"commands\")[\"%s\"]", name);
        if (luaL_loadbufferx(L, chunk, strlen(chunk), "=command", "t") != LUA_OK)
            goto done;
        sp_gen_push_env(r->w.gen);
        lua_setupvalue(L, -2, 1);
    }
    if (lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "spacer: no command \"%s\" in %s/commands.lua\n", name,
                conf->scripts_dir);
        goto done;
    }
    lua_createtable(L, 0, nopts);
    for (int i = 0; i < nopts; i++) {
        lua_pushstring(L, values[i]);
        lua_setfield(L, -2, keys[i]);
    }
    if (sp_runner_call(r, 1, &err) != 0) {
        fprintf(stderr, "spacer %s: %s\n", name, error_text(L));
        goto done;
    }
    if (lua_isstring(L, -1))
        printf("%s\n", lua_tostring(L, -1));
    rc = 0;
done:
    sp_runner_free(r);
    return rc;
}
