/* lua_db.c: spacer.db and spacer.password — the calls that wait. Each sends its work off the
 * coroutine (to the PostgreSQL pool or the hashing threads) and yields; the completion
 * resumes the coroutine with a pointer to the outcome, and the continuation, running inside
 * the coroutine again, turns it into Lua values (so a memory error there is a script error,
 * never a crash). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "conf.h"
#include "gen.h"
#include "json.h"
#include "lua_spacer.h"
#include "pgjson.h"
#include "pgpool.h"
#include "req.h"

#define MAX_PARAMS 64

/* PostgreSQL type OIDs we convert (pg_type.h). */
enum {
    OID_BOOL = 16, OID_TEXT = 25, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_OID = 26, OID_JSON = 114,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_INT2ARR = 1005, OID_INT4ARR = 1007,
    OID_TEXTARR = 1009, OID_VARCHARARR = 1015, OID_INT8ARR = 1016, OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_JSONB = 3802,
};

static const char key_db_error_mt = 'd';

static struct sp_req *need_req(lua_State *L)
{
    struct sp_req *req = sp_gen_req(L);

    if (req == NULL || req->w == NULL)
        luaL_error(L, "spacer.db and spacer.password work only inside a request or a test");
    return req;
}

/* ---- values ----------------------------------------------------------------- */

static void push_timestamp(lua_State *L, const char *v, int with_zone)
{
    /* PostgreSQL ISO output: "2026-12-01 10:00:00.5+03" or "+05:30"; we answer ISO 8601 with
     * a T and a full offset: "2026-12-01T10:00:00.5+03:00". */
    char buf[64];
    size_t n = strlen(v);

    if (n >= sizeof(buf) - 4) {
        lua_pushstring(L, v);
        return;
    }
    memcpy(buf, v, n + 1);
    if (n > 10 && buf[10] == ' ')
        buf[10] = 'T';
    if (with_zone && n >= 3 && (buf[n - 3] == '+' || buf[n - 3] == '-')) {
        buf[n] = ':', buf[n + 1] = '0', buf[n + 2] = '0', buf[n + 3] = '\0';
    }
    lua_pushstring(L, buf);
}

/* A one-dimensional array literal: {1,2,"a b",NULL}. Elements are integers when int is set. */
static void push_array(lua_State *L, const char *v, int is_int)
{
    struct sp_buf item = {0};
    lua_Integer i = 0;
    int is_null;

    sp_json_new_array(L, 0);
    if (*v != '{') {
        lua_pushstring(L, v);
        lua_rawseti(L, -2, ++i);
        return;
    }
    for (v++; sp_pgjson_array_next(&v, &item, &is_null);) {
        if (is_null)
            sp_json_push_null(L);
        else if (is_int)
            lua_pushinteger(L, strtoll(item.data, NULL, 10));
        else
            lua_pushlstring(L, item.data, item.len);
        lua_rawseti(L, -2, ++i);
    }
    sp_buf_free(&item);
}

static void push_value(lua_State *L, const PGresult *res, int row, int col, Oid type)
{
    const char *v;
    int len;
    sp_err err;

    if (PQgetisnull(res, row, col)) {
        sp_json_push_null(L);
        return;
    }
    v = PQgetvalue(res, row, col);
    len = PQgetlength(res, row, col);
    switch (type) {
    case OID_BOOL: lua_pushboolean(L, v[0] == 't'); break;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID: lua_pushinteger(L, strtoll(v, NULL, 10)); break;
    case OID_FLOAT4:
    case OID_FLOAT8: lua_pushnumber(L, strtod(v, NULL)); break;
    case OID_JSON:
    case OID_JSONB:
        if (sp_json_decode(L, v, (size_t)len, SP_JSON_MAX_DEPTH * 2, &err) != 0)
            lua_pushlstring(L, v, (size_t)len);
        break;
    case OID_TIMESTAMPTZ: push_timestamp(L, v, 1); break;
    case OID_TIMESTAMP: push_timestamp(L, v, 0); break;
    case OID_INT2ARR:
    case OID_INT4ARR:
    case OID_INT8ARR: push_array(L, v, 1); break;
    case OID_TEXTARR:
    case OID_VARCHARARR: push_array(L, v, 0); break;
    default: lua_pushlstring(L, v, (size_t)len); break; /* text, numeric (exact), enums ... */
    }
}

/* Pushes the rows of res as an array of tables keyed by column name. */
static void push_rows(lua_State *L, const PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res), names;
    Oid types[256];

    luaL_checkstack(L, ncols + 4, "too many columns");
    names = lua_gettop(L) + 1;
    for (int c = 0; c < ncols; c++) {
        lua_pushstring(L, PQfname(res, c));
        types[c < 256 ? c : 255] = PQftype(res, c);
    }
    sp_json_new_array(L, nrows);
    for (int r = 0; r < nrows; r++) {
        lua_createtable(L, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            lua_pushvalue(L, names + c);
            push_value(L, res, r, c, c < 256 ? types[c] : PQftype(res, c));
            lua_rawset(L, -3);
        }
        lua_rawseti(L, -2, r + 1);
    }
    lua_replace(L, names); /* Stack: rows, name2..nameN */
    lua_settop(L, names);
}

/* Raises the outcome of a failed operation: a db error object, or a 503 for the edge. */
static int raise_pg(lua_State *L, const struct sp_pg_result *r)
{
    if (r->status == SP_PG_UNAVAILABLE)
        return sp_lua_http_error(L, 503, "db_unavailable", "database unavailable");
    if (r->status == SP_PG_BUSY)
        return sp_lua_http_error(L, 503, "db_busy", "server busy, try again shortly");
    lua_createtable(L, 0, 4);
    lua_pushstring(L, r->sqlstate ? r->sqlstate : "XX000");
    lua_setfield(L, -2, "sqlstate");
    lua_pushstring(L, r->message ? r->message : "query failed");
    lua_setfield(L, -2, "message");
    if (r->constraint) {
        lua_pushstring(L, r->constraint);
        lua_setfield(L, -2, "constraint");
    }
    if (r->detail) {
        lua_pushstring(L, r->detail);
        lua_setfield(L, -2, "detail");
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_db_error_mt);
    lua_setmetatable(L, -2);
    return lua_error(L);
}

static int l_db_error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "sqlstate");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "database error %s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
    return 1;
}

/* ---- queries ----------------------------------------------------------------- */

enum db_mode { DB_ROWS, DB_ONE, DB_EXEC, DB_PLAIN, DB_JSON, DB_JSON_ONE, DB_JSON_WITH };

static void query_done(void *arg, const struct sp_pg_result *r)
{
    struct sp_req *req = arg;

    req->pending--;
    lua_pushlightuserdata(req->co, (void *)r);
    sp_req_resume(req, 1);
}

/* json_with: the shapers are the table at index 1 of the coroutine's stack. */
static int shaper_has(void *arg, const char *column)
{
    lua_State *L = arg;
    int yes = lua_getfield(L, 1, column) == LUA_TFUNCTION;

    lua_pop(L, 1);
    return yes;
}

/* spacer.time.format as the shaper of {epoch,zone} (a text array, its zone unquoted): done
 * here, without the Lua call. -1: not such a value, or a bad one (the Lua call then says). */
static int shape_time(const char *v, struct sp_buf *out)
{
    char zone[128], buf[64];
    const char *comma;
    char *end;
    long long epoch;
    size_t n;
    sp_err err;

    if (v[0] != '{' || (comma = strchr(v, ',')) == NULL)
        return -1;
    epoch = strtoll(v + 1, &end, 10);
    if (end != comma || comma[1] == '"' || (n = strlen(comma + 1)) < 2 || n > sizeof(zone) ||
        comma[n] != '}')
        return -1;
    memcpy(zone, comma + 1, n - 1);
    zone[n - 1] = '\0';
    if (sp_time_format((int64_t)epoch, zone, buf, sizeof(buf), &err) != 0)
        return -1;
    sp_json_add_string(out, buf, strlen(buf));
    return 0;
}

/* A spacer.json.scaler function as the shaper of "factor text": done here, without the Lua
 * call. -1: not such a value, or one the fast path leaves (the Lua call then does it). */
static int shape_scaled(lua_State *L, const char *v, int len, struct sp_buf *out)
{
    size_t keys_len;
    const char *keys, *space = memchr(v, ' ', (size_t)len);
    char *end;
    double f;
    int rc = -1;

    if (space == NULL)
        return -1;
    f = strtod(v, &end);
    if (end != space || end == v)
        return -1;
    lua_getupvalue(L, -1, 1);
    keys = lua_tolstring(L, -1, &keys_len);
    if (keys != NULL)
        rc = sp_json_scale(space + 1, (size_t)(v + len - space - 1), keys, keys_len, f, out);
    lua_pop(L, 1);
    return rc;
}

/* Calls shapers[column](value) — for an array value, with its elements as the arguments —
 * and encodes what it answers; on failure the error message is left on the stack. */
static int shaper_write(void *arg, const PGresult *res, int row, int col, struct sp_buf *out)
{
    lua_State *L = arg;
    Oid type = PQftype(res, col);
    int nargs = 1;
    sp_err err;

    lua_getfield(L, 1, PQfname(res, col));
    if (type == OID_TEXTARR && lua_tocfunction(L, -1) == sp_lua_time_format &&
        shape_time(PQgetvalue(res, row, col), out) == 0) {
        lua_pop(L, 1);
        return 0;
    }
    if (type == OID_TEXT && lua_tocfunction(L, -1) == sp_lua_json_scale &&
        shape_scaled(L, PQgetvalue(res, row, col), PQgetlength(res, row, col), out) == 0) {
        lua_pop(L, 1);
        return 0;
    }
    if (type == OID_JSONB && lua_tocfunction(L, -1) == sp_lua_json_object) {
        const char *v = PQgetvalue(res, row, col);
        if (v[0] != '{' && v[0] != '[') { /* a scalar: not a table */
            sp_buf_add(out, "{}", 2);
            lua_pop(L, 1);
            return 0;
        }
        if (sp_pgjson_jsonb(v, (size_t)PQgetlength(res, row, col), out) == 0) {
            lua_pop(L, 1);
            return 0;
        }
    }
    push_value(L, res, row, col, type);
    if (type == OID_TEXTARR || type == OID_VARCHARARR || type == OID_INT2ARR ||
        type == OID_INT4ARR || type == OID_INT8ARR) {
        int t = lua_gettop(L);
        nargs = (int)lua_rawlen(L, t);
        luaL_checkstack(L, nargs, "too many array elements for a shaper");
        for (int i = 1; i <= nargs; i++)
            lua_rawgeti(L, t, i);
        lua_remove(L, t);
    }
    if (lua_pcall(L, nargs, 1, 0) != LUA_OK)
        return -1;
    if (sp_json_encode(L, -1, out, SP_JSON_MAX_DEPTH, &err) != 0) {
        lua_pop(L, 1);
        lua_pushfstring(L, "spacer.db.json_with: %s: %s", PQfname(res, col), err.msg);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

/* The JSON of the rows (pgjson.h) and a table of the first row's "_" columns, named without
 * the "_" ({total = 54}). */
static int push_json(lua_State *L, const PGresult *res, int one, int shaped)
{
    struct sp_buf b = {0};
    struct sp_pgjson_hooks hooks = {shaper_has, shaper_write, L};
    int n = sp_pgjson_write(res, one, shaped ? &hooks : NULL, &b);

    if (n < 0) {
        sp_buf_free(&b);
        return lua_error(L); /* the shaper's error */
    }
    if (one && n == 0)
        lua_pushnil(L);
    else
        sp_json_push_raw(L, b.data, b.len);
    sp_buf_free(&b);
    lua_newtable(L);
    for (int c = 0; c < PQnfields(res) && PQntuples(res) > 0; c++) {
        const char *name = PQfname(res, c);
        if (name[0] != '_')
            continue;
        push_value(L, res, 0, c, PQftype(res, c));
        lua_setfield(L, -2, name + 1);
    }
    return 2;
}

static int query_cont(lua_State *L, int status, lua_KContext ctx)
{
    const struct sp_pg_result *r = lua_touserdata(L, -1);
    const char *n;

    SP_UNUSED(status);
    lua_pop(L, 1);
    if (r->status != SP_PG_OK)
        return raise_pg(L, r);
    switch ((enum db_mode)ctx) {
    case DB_ROWS: push_rows(L, r->res); return 1;
    case DB_ONE:
        push_rows(L, r->res);
        lua_rawgeti(L, -1, 1);
        return 1;
    case DB_EXEC:
        n = PQcmdTuples(r->res);
        lua_pushinteger(L, n && *n ? strtoll(n, NULL, 10) : 0);
        return 1;
    case DB_PLAIN: return 0;
    case DB_JSON: return push_json(L, r->res, 0, 0);
    case DB_JSON_ONE: return push_json(L, r->res, 1, 0);
    case DB_JSON_WITH: return push_json(L, r->res, 0, 1);
    }
    return 0;
}

/* Converts arguments from..top into text parameters (valid until the stack is popped). */
static int to_params(lua_State *L, int from, const char **values, struct sp_buf *scratch)
{
    int n = lua_gettop(L) - from + 1;

    if (n > MAX_PARAMS)
        return luaL_error(L, "too many query parameters (at most %d)", MAX_PARAMS);
    for (int i = 0; i < n; i++) {
        int idx = from + i;
        sp_err err;
        switch (lua_type(L, idx)) {
        case LUA_TNIL: values[i] = NULL; break;
        case LUA_TLIGHTUSERDATA:
            if (!sp_json_is_null(L, idx))
                return luaL_error(L, "query parameter $%d: unsupported value", i + 1);
            values[i] = NULL;
            break;
        case LUA_TBOOLEAN: values[i] = lua_toboolean(L, idx) ? "true" : "false"; break;
        case LUA_TNUMBER:
        case LUA_TSTRING:
            if (lua_isinteger(L, idx) || lua_type(L, idx) == LUA_TSTRING) {
                size_t len;
                values[i] = lua_tolstring(L, idx, &len);
                /* libpq takes C strings: a NUL would cut the value short, silently. */
                if (memchr(values[i], '\0', len) != NULL)
                    return luaL_error(L, "query parameter $%d contains a NUL byte (text in "
                                         "PostgreSQL cannot hold one)", i + 1);
            } else {
                char num[64];
                snprintf(num, sizeof(num), "%.17g", lua_tonumber(L, idx));
                lua_pushstring(L, num);
                lua_replace(L, idx);
                values[i] = lua_tostring(L, idx);
            }
            break;
        case LUA_TTABLE: /* as JSON: use $n::jsonb in the SQL */
            scratch->len = 0;
            if (sp_json_encode(L, idx, scratch, SP_JSON_MAX_DEPTH, &err) != 0)
                return luaL_error(L, "query parameter $%d: %s", i + 1, err.msg);
            lua_pushlstring(L, scratch->data, scratch->len);
            lua_replace(L, idx);
            values[i] = lua_tostring(L, idx);
            break;
        default:
            return luaL_error(L, "query parameter $%d: cannot send a %s", i + 1,
                              luaL_typename(L, idx));
        }
    }
    return n;
}

static int db_send(lua_State *L, enum db_mode mode)
{
    struct sp_req *req = need_req(L);
    int at = mode == DB_JSON_WITH ? 2 : 1; /* json_with: the shapers come first */
    const char *sql = sp_lua_checktext(L, at, NULL);
    const char *values[MAX_PARAMS];
    struct sp_buf scratch = {0};
    int n, rc;

    if (mode == DB_JSON_WITH)
        luaL_checktype(L, 1, LUA_TTABLE);
    n = to_params(L, at + 1, values, &scratch);
    sp_buf_free(&scratch);
    if (req->npins > 0)
        rc = sp_pool_query_on(req->pins[req->npins - 1], sql, n, values, query_done, req);
    else
        rc = sp_pool_query(req->w->pool, sql, n, values, query_done, req);
    if (rc != 0)
        return sp_lua_http_error(L, 503, "db_unavailable", "database unavailable");
    req->pending++;
    return lua_yieldk(L, 0, (lua_KContext)mode, query_cont);
}

/* spacer.db.query(sql, ...) -> rows  [-n, +1, e] (yields) */
static int l_db_query(lua_State *L)
{
    return db_send(L, DB_ROWS);
}

/* spacer.db.one(sql, ...) -> row | nil  [-n, +1, e] (yields) */
static int l_db_one(lua_State *L)
{
    return db_send(L, DB_ONE);
}

/* spacer.db.json(sql, ...) -> the rows as a raw JSON array, meta  [-n, +2, e] (yields) */
static int l_db_json(lua_State *L)
{
    return db_send(L, DB_JSON);
}

/* spacer.db.json_one(sql, ...) -> the first row as a raw JSON object | nil, meta
 * [-n, +2, e] (yields) */
static int l_db_json_one(lua_State *L)
{
    return db_send(L, DB_JSON_ONE);
}

/* spacer.db.json_with(shapers, sql, ...) -> as spacer.db.json, but a column named in shapers
 * is written as shapers[name](value) answers  [-n, +2, e] (yields) */
static int l_db_json_with(lua_State *L)
{
    return db_send(L, DB_JSON_WITH);
}

/* spacer.db.exec(sql, ...) -> affected rows  [-n, +1, e] (yields) */
static int l_db_exec(lua_State *L)
{
    return db_send(L, DB_EXEC);
}

/* ---- transactions: the prelude's db.tx() uses these ------------------------------- */

static void acquire_done(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r)
{
    struct sp_req *req = arg;

    req->pending--;
    if (conn != NULL)
        req->pins[req->npins++] = conn;
    lua_pushlightuserdata(req->co, (void *)r);
    sp_req_resume(req, 1);
}

static int begin_cont(lua_State *L, int status, lua_KContext ctx)
{
    struct sp_req *req = sp_gen_req(L);
    const struct sp_pg_result *r = lua_touserdata(L, -1);

    SP_UNUSED(status);
    SP_UNUSED(ctx);
    lua_pop(L, 1);
    if (r->status != SP_PG_OK)
        return raise_pg(L, r);
    if (sp_pool_query_on(req->pins[req->npins - 1], "BEGIN", 0, NULL, query_done, req) != 0)
        return sp_lua_http_error(L, 503, "db_unavailable", "database unavailable");
    req->pending++;
    return lua_yieldk(L, 0, DB_PLAIN, query_cont);
}

static int l_db_begin(lua_State *L)
{
    struct sp_req *req = need_req(L);

    if (req->npins >= SP_REQ_MAX_PINS)
        return luaL_error(L, "transactions nested too deeply");
    if (req->npins > 0)
        return luaL_error(L, "spacer.db.tx: already inside a transaction");
    if (sp_pool_acquire(req->w->pool, acquire_done, req) != 0)
        return sp_lua_http_error(L, 503, "db_unavailable", "database unavailable");
    req->pending++;
    return lua_yieldk(L, 0, 0, begin_cont);
}

static int finish_cont(lua_State *L, int status, lua_KContext ctx)
{
    struct sp_req *req = sp_gen_req(L);
    const struct sp_pg_result *r = lua_touserdata(L, -1);

    SP_UNUSED(status);
    SP_UNUSED(ctx);
    lua_pop(L, 1);
    sp_pool_release(req->pins[--req->npins]);
    if (r->status != SP_PG_OK)
        return raise_pg(L, r);
    return 0;
}

static int db_finish(lua_State *L, const char *sql)
{
    struct sp_req *req = need_req(L);

    if (req->npins == 0)
        return luaL_error(L, "not inside a transaction");
    if (sp_pool_query_on(req->pins[req->npins - 1], sql, 0, NULL, query_done, req) != 0) {
        sp_pool_release(req->pins[--req->npins]);
        return sp_lua_http_error(L, 503, "db_unavailable", "database unavailable");
    }
    req->pending++;
    return lua_yieldk(L, 0, 0, finish_cont);
}

static int l_db_commit(lua_State *L)
{
    return db_finish(L, "COMMIT");
}

static int l_db_rollback(lua_State *L)
{
    return db_finish(L, "ROLLBACK");
}

static int l_db_is_error(lua_State *L)
{
    int yes = 0;

    if (lua_getmetatable(L, 1)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &key_db_error_mt);
        yes = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, yes);
    return 1;
}

void sp_lua_open_db(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"query", l_db_query},     {"one", l_db_one},           {"exec", l_db_exec},
        {"json", l_db_json},       {"json_one", l_db_json_one}, {"json_with", l_db_json_with},
        {"_begin", l_db_begin},    {"_commit", l_db_commit},    {"_rollback", l_db_rollback},
        {"is_error", l_db_is_error}, {NULL, NULL},
    };

    lua_newtable(L);
    lua_pushcfunction(L, l_db_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "spacer.db.error");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_db_error_mt);
    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "db");
}

/* ---- passwords ---------------------------------------------------------------- */

struct hash_outcome {
    int ok, match;
    const char *result;
};

static void hash_done(void *arg, int ok, int match, const char *result)
{
    struct sp_req *req = arg;
    struct hash_outcome o = {ok, match, result};

    req->pending--;
    lua_pushlightuserdata(req->co, &o);
    sp_req_resume(req, 1);
}

static int hash_cont(lua_State *L, int status, lua_KContext ctx)
{
    const struct hash_outcome *o = lua_touserdata(L, -1);

    SP_UNUSED(status);
    lua_pop(L, 1);
    if (!o->ok)
        return luaL_error(L, "password hashing failed: %s", o->result ? o->result : "?");
    if (ctx == 1)
        lua_pushboolean(L, o->match);
    else
        lua_pushstring(L, o->result);
    return 1;
}

/* spacer.password.hash(password) -> "$2b$..."  (yields; runs on the hashing threads) */
static int l_password_hash(lua_State *L)
{
    struct sp_req *req = need_req(L);
    size_t len;
    const char *pw = sp_lua_checktext(L, 1, &len); /* bcrypt would stop at a NUL */
    sp_err err;

    if (sp_hasher_hash(req->w->hasher, pw, len, req->w->conf->bcrypt_cost, hash_done, req,
                       &err) != 0)
        return luaL_error(L, "password hashing failed: %s", err.msg);
    req->pending++;
    return lua_yieldk(L, 0, 0, hash_cont);
}

/* spacer.password.verify(password, hash|nil) -> boolean  (yields; a nil hash still costs one
 * verification, so timing does not reveal which accounts exist) */
static int l_password_verify(lua_State *L)
{
    struct sp_req *req = need_req(L);
    size_t len;
    const char *pw = sp_lua_checktext(L, 1, &len); /* bcrypt would stop at a NUL */
    const char *hash = lua_isstring(L, 2) ? sp_lua_checktext(L, 2, NULL) : NULL;
    sp_err err;

    if (sp_hasher_verify(req->w->hasher, pw, len, hash, hash_done, req, &err) != 0)
        return luaL_error(L, "password verification failed: %s", err.msg);
    req->pending++;
    return lua_yieldk(L, 0, 1, hash_cont);
}

/* spacer.jwt.issue(user_id, role) -> token, expires_in */
static int l_jwt_issue(lua_State *L)
{
    struct sp_gen *gen = sp_gen_of(L);
    lua_Integer sub = luaL_checkinteger(L, 1);
    const char *role = sp_lua_checktext(L, 2, NULL);
    const struct sp_conf *c = gen->conf;
    struct sp_jwt_conf jc = {(const unsigned char *)c->jwt_secret, strlen(c->jwt_secret),
                             c->token_lifetime_s, c->leeway_s};
    char *token = NULL;
    sp_err err;

    if (sp_jwt_issue(&jc, (int64_t)sub, role, time(NULL), &token, &err) != 0)
        return luaL_error(L, "cannot issue a token: %s", err.msg);
    lua_pushstring(L, token);
    free(token);
    lua_pushinteger(L, c->token_lifetime_s);
    return 2;
}

void sp_lua_open_auth(lua_State *L)
{
    static const luaL_Reg pw[] = {
        {"hash", l_password_hash},
        {"verify", l_password_verify},
        {NULL, NULL},
    };
    static const luaL_Reg jwt[] = {{"issue", l_jwt_issue}, {NULL, NULL}};

    luaL_newlib(L, pw);
    lua_setfield(L, -2, "password");
    luaL_newlib(L, jwt);
    lua_setfield(L, -2, "jwt");
}
