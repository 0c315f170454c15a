/* lua_ops.c: spacer.ops — what operators' routes need from the core: Prometheus text, every
 * worker's state, and a reload of all workers through the master (asynchronous: the asking
 * worker must keep its loop turning to reload itself). */
#include <event2/event.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "gen.h"
#include "json.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "router.h"
#include "req.h"

/* spacer.ops.metrics() -> Prometheus exposition text */
static int l_ops_metrics(lua_State *L)
{
    struct sp_buf b = {0};

    metrics_render(&b);
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    sp_buf_free(&b);
    return 1;
}

static void push_time(lua_State *L, time_t t)
{
    char buf[64];
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    lua_pushstring(L, buf);
}

/* spacer.ops.workers() -> { {index, pid, alive, generation, loaded_at, last_reload_error,
 *   lua_memory, pool = {total, idle, busy, connecting, queued}}, ... } */
static int l_ops_workers(lua_State *L)
{
    int n = metrics_nworkers();

    sp_json_new_array(L, n);
    for (int i = 0; i < n; i++) {
        struct sp_worker_info *wi = metrics_worker(i);
        lua_createtable(L, 0, 8);
        lua_pushinteger(L, i);
        lua_setfield(L, -2, "index");
        lua_pushinteger(L, wi->pid);
        lua_setfield(L, -2, "pid");
        lua_pushboolean(L, wi->alive);
        lua_setfield(L, -2, "alive");
        lua_pushinteger(L, (lua_Integer)wi->generation);
        lua_setfield(L, -2, "generation");
        push_time(L, wi->loaded_at);
        lua_setfield(L, -2, "loaded_at");
        if (wi->last_error[0])
            lua_pushstring(L, wi->last_error);
        else
            sp_json_push_null(L);
        lua_setfield(L, -2, "last_reload_error");
        lua_pushinteger(L, (lua_Integer)wi->lua_memory);
        lua_setfield(L, -2, "lua_memory");
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, wi->pool_total);
        lua_setfield(L, -2, "total");
        lua_pushinteger(L, wi->pool_idle);
        lua_setfield(L, -2, "idle");
        lua_pushinteger(L, wi->pool_busy);
        lua_setfield(L, -2, "busy");
        lua_pushinteger(L, wi->pool_connecting);
        lua_setfield(L, -2, "connecting");
        lua_pushinteger(L, wi->pool_queued);
        lua_setfield(L, -2, "queued");
        lua_setfield(L, -2, "pool");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* spacer.ops.routes() -> { {method, path, auth, roles, compat, source, opts}, ... } of the
 * generation this request runs on: the OpenAPI document is made from it. */
static int l_ops_routes(lua_State *L)
{
    struct sp_gen *gen = sp_gen_of(L);
    int n = sp_router_count(gen->router);

    sp_json_new_array(L, n);
    for (int i = 0; i < n; i++) {
        struct sp_route *rt = sp_router_at(gen->router, i);
        lua_createtable(L, 0, 7);
        lua_pushstring(L, rt->method);
        lua_setfield(L, -2, "method");
        lua_pushstring(L, rt->pattern);
        lua_setfield(L, -2, "path");
        lua_pushboolean(L, rt->auth);
        lua_setfield(L, -2, "auth");
        lua_pushboolean(L, rt->compat);
        lua_setfield(L, -2, "compat");
        lua_pushstring(L, rt->source);
        lua_setfield(L, -2, "source");
        sp_json_new_array(L, rt->nroles);
        for (int k = 0; k < rt->nroles; k++) {
            lua_pushstring(L, rt->roles[k]);
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, "roles");
        lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref);
        lua_getfield(L, -1, "opts");
        lua_setfield(L, -3, "opts");
        lua_pop(L, 1);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void reload_done(struct sp_req *req, const char *answer, size_t len, const char *failure)
{
    sp_err err;

    req->pending--;
    if (req->cancelled) {
        sp_req_resume(req, 0);
        return;
    }
    if (failure == NULL && answer != NULL && len > 0 &&
        sp_json_decode(req->co, answer, len, SP_JSON_MAX_DEPTH, &err) == 0) {
        lua_pushnil(req->co);
    } else {
        lua_pushnil(req->co);
        lua_pushstring(req->co, failure ? failure : "no answer from the master");
    }
    sp_req_resume(req, 2);
}

static int reload_cont(lua_State *L, int status, lua_KContext ctx)
{
    SP_UNUSED(status);
    SP_UNUSED(ctx);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1); /* Stack: answer, nil -> answer */
        return 1;
    }
    return 2; /* nil, message */
}

/* spacer.ops.reload() -> answer | nil, err   (yields) */
static int l_ops_reload(lua_State *L)
{
    struct sp_req *req = sp_gen_req(L);
    const struct sp_ops *ops = req && req->w ? req->w->ops : NULL;

    if (ops == NULL || ops->reload == NULL)
        return luaL_error(L, "spacer.ops.reload works only in a server's request");
    if (ops->reload(ops->ctx, req, reload_done) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot reach the master");
        return 2;
    }
    req->pending++;
    return lua_yieldk(L, 0, 0, reload_cont);
}

void sp_lua_open_ops(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"metrics", l_ops_metrics},
        {"workers", l_ops_workers},
        {"reload", l_ops_reload},
        {"routes", l_ops_routes},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "ops");
}
