/* req.c: a request's life cycle. The HTTP layer hands up a parsed request; this assigns its
 * id, answers CORS preflights, routes it, verifies the token, decodes the JSON body and runs the
 * route's handler in a fresh coroutine of the current generation; the handler's waits
 * (database, hashing) yield and the loop serves everyone else. The reply goes back down
 * through the connection; a client that leaves cancels its request. */
#include "req.h"

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "auth.h"
#include "cache.h"
#include "conf.h"
#include "files.h"
#include "gen.h"
#include "json.h"
#include "log.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "pglisten.h"
#include "pgpool.h"

static void access_log(struct sp_host *host, const char *id, const struct sp_route *route,
                       const char *method, const char *path, int status, size_t bytes,
                       uint64_t dur);

/* ---- replies ------------------------------------------------------------------ */

static int origin_allowed(const struct sp_conf *c, const char *origin)
{
    for (int i = 0; origin && i < c->ncors; i++)
        if (strcmp(c->cors_origins[i], origin) == 0 || strcmp(c->cors_origins[i], "*") == 0)
            return 1;
    return 0;
}

/* Headers every response carries: request id, CORS for allowed origins. */
static void common_headers(struct sp_req *req)
{
    struct sp_http_out *out = &req->out;
    const char *origin = sp_http_req_header(req->http, "Origin");

    sp_http_out_add(out, "X-Request-Id", req->id);
    if (origin_allowed(req->w->conf, origin)) {
        sp_http_out_add(out, "Access-Control-Allow-Origin", origin);
        sp_http_out_add(out, "Vary", "Origin");
        sp_http_out_add(out, "Access-Control-Expose-Headers",
                        "X-Total-Count, Link, X-Request-Id, Retry-After");
    }
}

/* release(arg), when given, is called once body may go (it is sent without a copy). */
static void send_body_ref(struct sp_req *req, int status, const char *ctype, const char *body,
                          size_t len, void (*release)(void *arg), void *arg)
{
    req->status = status;
    req->bytes = len;
    if (req->conn == NULL) {
        if (release != NULL)
            release(arg);
        return; /* cancelled, or a script test */
    }
    common_headers(req);
    if (ctype != NULL)
        sp_http_out_add(&req->out, "Content-Type", ctype);
    /* Logged now: once answered, the connection reuses the request's memory. */
    access_log(req->w, req->id, req->route, req->method, req->http->path, status, len,
               sp_now_us() - req->start_us);
    req->http->data = NULL;
    sp_http_respond_ref(req->conn, req->http, status, &req->out, body, len, release, arg);
    req->conn = NULL; /* answered: the connection goes on without us */
    req->http = NULL;
}

static void send_body(struct sp_req *req, int status, const char *ctype, const char *body,
                      size_t len)
{
    send_body_ref(req, status, ctype, body, len, NULL, NULL);
}

/* {"error": message, "code": code} (+ "message" on the old web app's paths) */
static void send_error(struct sp_req *req, int status, const char *code, const char *message)
{
    struct sp_buf b = {0};

    sp_buf_adds(&b, "{\"error\":");
    sp_json_add_string(&b, message, strlen(message));
    sp_buf_adds(&b, ",\"code\":");
    sp_json_add_string(&b, code, strlen(code));
    if (req->route != NULL && req->route->compat) {
        sp_buf_adds(&b, ",\"message\":");
        sp_json_add_string(&b, message, strlen(message));
    }
    if (status >= 500) {
        sp_buf_adds(&b, ",\"request_id\":");
        sp_json_add_string(&b, req->id, strlen(req->id));
    }
    sp_buf_addc(&b, '}');
    send_body(req, status, "application/json; charset=utf-8", b.data, b.len);
    sp_buf_free(&b);
}

/* ---- the end of a handler --------------------------------------------------------- */

/* Whether a Lua table of headers can be sent as it is: a name or value with a NUL byte would
 * be cut short (headers are C strings below), so it is refused; names the first bad one. */
static int lua_headers_ok(lua_State *co, int idx, char *bad, size_t cap)
{
    int ok = 1;

    if (!lua_istable(co, idx))
        return 1;
    lua_pushnil(co);
    while (ok && lua_next(co, idx) != 0) {
        size_t nlen, vlen;
        if (lua_type(co, -2) == LUA_TSTRING && lua_type(co, -1) == LUA_TSTRING) {
            const char *name = lua_tolstring(co, -2, &nlen), *value = lua_tolstring(co, -1, &vlen);
            if (memchr(name, '\0', nlen) != NULL || memchr(value, '\0', vlen) != NULL) {
                snprintf(bad, cap, "%s", name);
                ok = 0;
                lua_pop(co, 1);
            }
        }
        lua_pop(co, 1);
    }
    return ok;
}

/* Copies a Lua table of headers (name -> string) to the response. */
static void add_lua_headers(struct sp_req *req, lua_State *co, int idx)
{
    struct sp_http_out *out = &req->out;

    if (!lua_istable(co, idx))
        return;
    lua_pushnil(co);
    while (lua_next(co, idx) != 0) {
        if (lua_type(co, -2) == LUA_TSTRING && (lua_isstring(co, -1))) {
            const char *name = lua_tostring(co, -2);
            lua_pushvalue(co, -1);
            const char *value = lua_tostring(co, -1);
            if (strcasecmp(name, "Content-Type") == 0)
                sp_http_out_remove(out, "Content-Type");
            sp_http_out_add(out, name, value);
            lua_pop(co, 1);
        }
        lua_pop(co, 1);
    }
}

static int has_header(struct sp_req *req, const char *name)
{
    return sp_http_out_has(&req->out, name);
}

/* ---- conditional GET and the answer cache ------------------------------------------- */

static const char *if_none_match(struct sp_req *req)
{
    return req->http != NULL ? sp_http_req_header(req->http, "If-None-Match") : NULL;
}

/* A 200 with an ETag, or a 304 when the client has it already. */
static void reply_etagged(struct sp_req *req, const char *etag, const char *headers,
                          size_t headers_len, const char *body, size_t len)
{
    sp_http_out_add(&req->out, "ETag", etag);
    if (sp_cache_etag_matches(if_none_match(req), etag)) {
        send_body(req, 304, NULL, NULL, 0);
        return;
    }
    for (const char *p = headers, *e = headers + headers_len; p < e;) {
        const char *value = p + strlen(p) + 1;
        sp_http_out_add(&req->out, p, value);
        p = value + strlen(value) + 1;
    }
    send_body(req, 200, "application/json; charset=utf-8", body, len);
}

/* A GET of a route with etag, before its handler: 1 when answered from the cache. */
static int cache_answer(struct sp_req *req, const char *path, const char *query)
{
    const struct sp_route *rt = req->route;
    struct sp_host *w = req->w;
    const struct sp_cache_entry *e;
    struct sp_buf key = {0};

    req->etag = 1;
    if (rt->ncache_tags == 0 || w->cache == NULL)
        return 0;
    if (!sp_listen_up(w->listen)) {
        metrics_cache_miss();
        return 0; /* changes may be missed now: never serve nor store */
    }
    for (int i = 0; i < rt->ncache_tags; i++)
        req->cache_versions[i] = sp_cache_version(rt->cache_tags[i]);
    sp_buf_adds(&key, path);
    if (query != NULL) {
        sp_buf_addc(&key, '?');
        sp_buf_adds(&key, query);
    }
    sp_buf_addc(&key, '\0');
    e = sp_cache_get(w->cache, key.data, req->gen->number, req->cache_versions, rt->ncache_tags);
    if (e == NULL) {
        metrics_cache_miss();
        req->cache_key = key.data; /* the handler's answer goes there */
        return 0;
    }
    sp_buf_free(&key);
    metrics_cache_hit();
    reply_etagged(req, e->etag, e->headers, e->headers_len, e->body, e->body_len);
    return 1;
}

/* A 200 JSON answer of a route with etag: tagged, kept when it may be, sent or a 304. */
static void reply_tagged(struct sp_req *req, lua_State *co, int hidx, const struct sp_buf *b)
{
    struct sp_buf h = {0};
    char etag[SP_CACHE_ETAG_LEN];

    if (hidx > 0 && lua_istable(co, hidx)) {
        lua_pushnil(co);
        while (lua_next(co, hidx) != 0) { /* Stack: k, v */
            if (lua_type(co, -2) == LUA_TSTRING && lua_isstring(co, -1)) {
                lua_pushvalue(co, -1);
                sp_buf_adds(&h, lua_tostring(co, -3));
                sp_buf_addc(&h, '\0');
                sp_buf_adds(&h, lua_tostring(co, -1));
                sp_buf_addc(&h, '\0');
                lua_pop(co, 1);
            }
            lua_pop(co, 1);
        }
    }
    sp_cache_etag(b->data, b->len, h.data, h.len, etag);
    if (req->cache_key != NULL)
        sp_cache_put(req->w->cache, req->cache_key, req->gen->number, req->cache_versions,
                     req->route->ncache_tags, etag, h.data, h.len, b->data, b->len);
    /* The headers are in req->out already (add_lua_headers): the ETag and the body remain. */
    reply_etagged(req, etag, NULL, 0, b->data, b->len);
    sp_buf_free(&h);
}

/* The handler returned: status, body[, headers] are at 1..n on the coroutine. */
static void reply_results(struct sp_req *req, int nres)
{
    lua_State *co = req->co;
    struct sp_file *file;
    struct sp_buf *b = &req->body; /* sent before it returns (copied if it must wait) */
    sp_err err;
    int status;

    if (nres < 1 || !lua_isinteger(co, 1) || lua_tointeger(co, 1) < 100 ||
        lua_tointeger(co, 1) > 599) {
        sp_log_fields(SP_LOG_ERROR, NULL, "%s %s: handler must return status, body[, headers]",
                      req->id, req->route->source);
        send_error(req, 500, "script_error", "internal error");
        return;
    }
    status = (int)lua_tointeger(co, 1);
    if (nres >= 3) {
        char bad[128];
        if (!lua_headers_ok(co, 3, bad, sizeof(bad))) {
            sp_log_fields(SP_LOG_ERROR, NULL, "%s %s: response header %s contains a NUL byte",
                          req->id, req->route->source, bad);
            send_error(req, 500, "script_error", "internal error");
            return;
        }
        add_lua_headers(req, co, 3);
    }
    if (nres < 2 || lua_isnil(co, 2)) {
        send_body(req, status, NULL, NULL, 0);
        return;
    }
    if ((file = sp_lua_tofile(co, 2)) != NULL) {
        sp_file_ref(file); /* the connection's, till written: the generation may end first */
        send_body_ref(req, status,
                      has_header(req, "Content-Type") ? NULL : "application/octet-stream",
                      file->data, file->len, sp_file_release, file);
        return;
    }
    if (lua_type(co, 2) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(co, 2, &len);
        send_body(req, status, has_header(req, "Content-Type") ? NULL : "text/plain; charset=utf-8",
                  s, len);
        return;
    }
    b->len = 0;
    if (sp_json_encode(co, 2, b, SP_JSON_MAX_DEPTH, &err) != 0) {
        sp_log(SP_LOG_ERROR, "%s %s: %s", req->id, req->route->source, err.msg);
        send_error(req, 500, "script_error", "internal error");
    } else if (req->etag && status == 200 && !has_header(req, "Content-Type")) {
        reply_tagged(req, co, nres >= 3 ? 3 : 0, b);
    } else {
        send_body(req, status,
                  has_header(req, "Content-Type") ? NULL : "application/json; charset=utf-8",
                  b->data, b->len);
    }
    b->len = 0;
}

/* A spacer.error table at the top of co: the reply it asks for. */
static void reply_http_error(struct sp_req *req)
{
    lua_State *co = req->co;
    int e = lua_gettop(co);
    struct sp_buf b = {0};
    int status;
    sp_err err;

    lua_getfield(co, e, "status");
    status = lua_isinteger(co, -1) ? (int)lua_tointeger(co, -1) : 500;
    if (status < 400 || status > 599)
        status = 500;
    lua_getfield(co, e, "headers");
    {
        char bad[128];
        if (!lua_headers_ok(co, lua_gettop(co), bad, sizeof(bad))) {
            sp_log_fields(SP_LOG_ERROR, NULL, "%s: error header %s contains a NUL byte", req->id,
                          bad);
            send_error(req, 500, "script_error", "internal error");
            return;
        }
    }
    add_lua_headers(req, co, lua_gettop(co));
    lua_settop(co, e);

    lua_createtable(co, 0, 6); /* the body */
    lua_getfield(co, e, "extra");
    if (lua_istable(co, -1)) {
        lua_pushnil(co);
        while (lua_next(co, -2) != 0) {
            lua_pushvalue(co, -2);
            lua_insert(co, -2);
            lua_rawset(co, e + 1);
        }
    }
    lua_pop(co, 1);
    lua_getfield(co, e, "message");
    lua_pushvalue(co, -1);
    lua_setfield(co, e + 1, "error");
    if (req->route != NULL && req->route->compat)
        lua_setfield(co, e + 1, "message");
    else
        lua_pop(co, 1);
    lua_getfield(co, e, "code");
    lua_setfield(co, e + 1, "code");
    lua_getfield(co, e, "fields");
    lua_setfield(co, e + 1, "fields");
    if (status >= 500) {
        lua_pushstring(co, req->id);
        lua_setfield(co, e + 1, "request_id");
    }
    if (sp_json_encode(co, e + 1, &b, SP_JSON_MAX_DEPTH, &err) != 0) {
        send_error(req, 500, "script_error", "internal error");
    } else {
        send_body(req, status, "application/json; charset=utf-8", b.data, b.len);
    }
    sp_buf_free(&b);
}

static int is_http_error(lua_State *co, int idx)
{
    int yes = 0;

    if (lua_getmetatable(co, idx)) {
        lua_rawgetp(co, LUA_REGISTRYINDEX, &sp_lua_error_mt_key);
        yes = lua_rawequal(co, -1, -2);
        lua_pop(co, 2);
    }
    return yes;
}

static void reply_failure(struct sp_req *req)
{
    lua_State *co = req->co, *L = req->gen->L;
    const char *msg, *where = req->route ? req->route->source : "?";

    if (req->budget.limit != SP_LIMIT_NONE) {
        const char *what = req->budget.limit == SP_LIMIT_MEMORY ? "memory" : "instruction";
        sp_log_fields(SP_LOG_ERROR, NULL, "%s %s: script %s limit exceeded; request ended",
                      req->id, where, what);
        if (req->conn != NULL)
            send_error(req, 500, "script_limit", req->budget.limit == SP_LIMIT_MEMORY
                                                     ? "script memory limit exceeded"
                                                     : "script instruction limit exceeded");
        metrics_script_error();
        if (req->budget.limit == SP_LIMIT_MEMORY)
            lua_gc(L, LUA_GCCOLLECT);
        return;
    }
    if (is_http_error(co, -1)) {
        if (req->conn != NULL)
            reply_http_error(req);
        return;
    }
    lua_pushliteral(co, "script error: ");
    sp_lua_push_error_text(co, -2); /* the whole message, NUL bytes included; no metamethod */
    lua_pushliteral(co, "\n");
    luaL_traceback(co, co, NULL, 0);
    lua_concat(co, 4);
    {
        char fields[200];
        size_t len;
        snprintf(fields, sizeof(fields), "\"request_id\":\"%s\",\"route\":\"%s\"", req->id,
                 where);
        msg = lua_tolstring(co, -1, &len);
        sp_log_text(SP_LOG_ERROR, fields, msg, len);
    }
    metrics_script_error();
    if (req->conn != NULL)
        send_error(req, 500, "script_error", "internal error");
}

static void req_finish(struct sp_req *req);

/* A cancelled request ends when its last operation has come back. */
/* Stops the operation the coroutine waits on, when it can be stopped. */
static void stop_waiting(struct sp_req *req)
{
    void (*cancel)(void *) = req->cancel;

    if (cancel == NULL)
        return;
    req->cancel = NULL;
    cancel(req->cancel_arg);
    if (req->pending > 0)
        req->pending--;
}

/* A coroutine for a request: a spare one of the generation, or a new one. */
static lua_State *co_take(struct sp_req *req)
{
    struct sp_gen *gen = req->gen;
    lua_State *co;

    if (gen->nspare_co > 0) {
        gen->nspare_co--;
        req->co_ref = gen->spare_ref[gen->nspare_co];
        return gen->spare_co[gen->nspare_co];
    }
    co = lua_newthread(gen->L);
    req->co_ref = luaL_ref(gen->L, LUA_REGISTRYINDEX);
    return co;
}

/* A coroutine that returned (or never started) is as good as new once emptied: kept for the
 * next request. One that failed, yields or was cancelled (its to-be-closed variables were
 * closed, its waits may still come back) is left to the collector. */
static void co_release(struct sp_req *req)
{
    struct sp_gen *gen = req->gen;
    lua_State *co = req->co;

    req->co = NULL;
    if (!req->cancelled && req->pending == 0 && gen->running == NULL &&
        lua_status(co) == LUA_OK && gen->nspare_co < SP_GEN_SPARE_CO) {
        lua_settop(co, 0);
        sp_gen_set_req(co, NULL);
        gen->spare_co[gen->nspare_co] = co;
        gen->spare_ref[gen->nspare_co++] = req->co_ref;
        return;
    }
    luaL_unref(gen->L, LUA_REGISTRYINDEX, req->co_ref);
}

static void req_free(struct sp_req *req)
{
    struct sp_host *host = req->w;

    stop_waiting(req);
    sp_req_release_pins(req);
    free(req->cache_key);
    if (req->co != NULL)
        co_release(req);
    sp_gen_unref(req->gen);
    if (req->body.cap > SP_REQ_KEEP_BODY)
        sp_buf_free(&req->body);
    if (host->nspare_req < SP_HOST_SPARE_REQS && req->out.head.cap <= 4096) {
        host->spare_req[host->nspare_req++] = req;
    } else {
        sp_buf_free(&req->out.head);
        sp_buf_free(&req->body);
        free(req);
    }
    if (--host->inflight == 0 && host->draining && host->on_idle != NULL)
        host->on_idle(host);
}

void sp_req_resume(struct sp_req *req, int nargs)
{
    int nres = 0, st;
    struct sp_gen *gen = req->gen;

    if (req->cancelled) {
        lua_settop(req->co, 0); /* the outcome nobody waits for any more */
        if (req->pending == 0)
            req_free(req);
        return;
    }
    gen->running = &req->budget;
    st = lua_resume(req->co, NULL, nargs, &nres);
    gen->running = NULL;
    if (st == LUA_YIELD) {
        if (req->pending > 0)
            return; /* an I/O completion will resume it */
        lua_pushliteral(req->co, "coroutine yielded outside of an I/O call");
        st = LUA_ERRRUN;
    }
    if (req->on_done != NULL) {
        req->on_done(req, st == LUA_OK);
        return;
    }
    if (st == LUA_OK)
        reply_results(req, nres);
    else
        reply_failure(req);
    req_finish(req);
}

void sp_req_start(struct sp_req *req, int nargs)
{
    sp_req_resume(req, nargs);
}

void sp_req_release_pins(struct sp_req *req)
{
    while (req->npins > 0)
        sp_pool_release(req->pins[--req->npins]); /* rolls back an open transaction */
}

/* ---- the access log ----------------------------------------------------------------- */

/* Buffered access lines (spacer.conf [http] access_log_buffer) leave in one write when the
 * buffer is full, when the oldest has waited access_log_flush, and as soon as the loop has a
 * pass with nothing else to do (an event of the lowest priority, which libevent runs only
 * then): under load a write carries many lines, while a quiet server's lines appear at
 * once. A reload, the drain and the exit write them too (sp_req_log_flush). */
static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    SP_UNUSED(fd);
    SP_UNUSED(what);
    sp_req_log_flush(arg, 0);
}

void sp_req_log_flush(struct sp_host *host, int final)
{
    sp_log_flush();
    if (host->log_flush != NULL)
        event_del(host->log_flush);
    if (host->log_idle != NULL)
        event_del(host->log_idle);
    if (final) {
        if (host->log_flush != NULL)
            event_free(host->log_flush);
        if (host->log_idle != NULL)
            event_free(host->log_idle);
        host->log_flush = host->log_idle = NULL;
        while (host->nspare_req > 0) {
            struct sp_req *req = host->spare_req[--host->nspare_req];
            sp_buf_free(&req->out.head);
            sp_buf_free(&req->body);
            free(req);
        }
    }
}

int sp_req_log_start(struct sp_host *host)
{
    const struct sp_conf *c = host->conf;

    if (!c->access_log || c->access_log_buffer == 0 || host->base == NULL)
        return 0;
    if (sp_log_buffer_init(c->access_log_buffer) != 0)
        return -1;
    host->log_flush = event_new(host->base, -1, 0, on_log_flush, host);
    host->log_idle = event_new(host->base, -1, 0, on_log_flush, host);
    if (host->log_flush == NULL || host->log_idle == NULL) {
        sp_req_log_flush(host, 1);
        sp_log_buffer_free();
        return -1;
    }
    /* the lowest priority, where the host set up several (the runner has one) */
    if (event_base_get_npriorities(host->base) > 1)
        event_priority_set(host->log_idle, event_base_get_npriorities(host->base) - 1);
    else {
        event_free(host->log_idle);
        host->log_idle = NULL;
    }
    host->log_flush_tv.tv_sec = c->access_log_flush_ms / 1000;
    host->log_flush_tv.tv_usec = (c->access_log_flush_ms % 1000) * 1000;
    return 0;
}

static void log_append(struct sp_host *host, const char *line, size_t n)
{
    if (host->log_flush == NULL) {
        sp_log_raw(line, n);
        return;
    }
    if (!sp_log_buffered(line, n))
        return; /* joined lines already waiting, or written (full) */
    if (host->conf->access_log_flush_ms == 0)
        event_active(host->log_flush, EV_TIMEOUT, 0);
    else
        event_add(host->log_flush, &host->log_flush_tv);
    if (host->log_idle != NULL)
        event_active(host->log_idle, EV_TIMEOUT, 0);
}

/* Appends n bytes of s; the line has room (see access_log). */
#define PUT(s, n) (memcpy(line + len, (s), (n)), len += (n))
#define PUTS(lit) PUT(lit, sizeof(lit) - 1)

static void access_log(struct sp_host *host, const char *id, const struct sp_route *route,
                       const char *method, const char *path, int status, size_t bytes,
                       uint64_t dur)
{
    char line[1024];
    size_t len = 0;
    time_t now = time(NULL);

    metrics_observe(route ? route->pattern : "unmatched", method, status, dur);
    if (!host->conf->access_log)
        return;
    /* The escaped strings stop 200 bytes short of the end: the numbers fit after them. */
    PUTS("{\"type\":\"access\",\"time\":");
    if (now < 0)
        line[len++] = '-', now = -now;
    len += sp_fmt_u64(line + len, (uint64_t)now);
    PUTS(",\"request_id\":\"");
    sp_json_escape(line, sizeof(line) - 200, &len, id);
    PUTS("\",\"method\":\"");
    sp_json_escape(line, sizeof(line) - 200, &len, method);
    PUTS("\",\"path\":\"");
    sp_json_escape(line, sizeof(line) - 200, &len, path);
    PUTS("\",\"route\":\"");
    sp_json_escape(line, sizeof(line) - 200, &len, route ? route->pattern : "");
    PUTS("\",\"status\":");
    len += sp_fmt_u64(line + len, (uint64_t)(status < 0 ? 0 : status));
    PUTS(",\"bytes\":");
    len += sp_fmt_u64(line + len, bytes);
    PUTS(",\"duration_us\":");
    len += sp_fmt_u64(line + len, dur);
    PUTS(",\"worker\":");
    len += sp_fmt_u64(line + len, (uint64_t)(host->index < 0 ? 0 : host->index));
    PUTS("}\n");
    log_append(host, line, len);
}

#undef PUT
#undef PUTS

/* ---- a request's way ------------------------------------------------------------- */

static void req_finish(struct sp_req *req)
{
    req_free(req);
}

void sp_req_log_refused(struct sp_host *host, int status, const char *id, const char *method,
                        const char *target)
{
    char path[512];

    snprintf(path, sizeof(path), "%.*s", (int)strcspn(target, "?#"), target);
    access_log(host, id, NULL, method[0] ? method : "-", path, status, 0, 0);
}

/* The client has gone: the reply will never be sent. What waits is dropped where it can be (a
 * queued hash), the rest comes back to a request that discards it; the coroutine is closed,
 * the pins released (an open transaction rolls back). */
void sp_req_cancel(struct sp_http_req *hr)
{
    struct sp_req *req = hr->data;
    char fields[160];

    if (req == NULL)
        return;
    hr->data = NULL;
    req->conn = NULL;
    req->cancelled = 1;
    req->status = 499; /* nginx's "client closed request", for the log */
    snprintf(fields, sizeof(fields), "\"request_id\":\"%s\"", req->id);
    sp_log_fields(SP_LOG_INFO, fields, "client gone: request %s %s cancelled", req->method,
                  req->http->path);
    access_log(req->w, req->id, req->route, req->method, req->http->path, 499, 0,
               sp_now_us() - req->start_us);
    req->http = NULL;
    stop_waiting(req);
    if (req->pending > 0)
        req->pending -= sp_hasher_cancel(req->w->hasher, req);
    if (req->pending > 0)
        req->pending -= sp_pool_cancel(req->w->pool, req);
    sp_req_release_pins(req);
    if (req->co != NULL) {
        lua_resetthread(req->co); /* closes its to-be-closed variables */
        lua_settop(req->co, 0);
    }
    if (req->pending == 0)
        req_free(req);
}

/* "%08x-%d-%llx" of salt, worker and sequence, without printf (it is once per request). */
void sp_req_make_id(struct sp_host *host, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[64];
    size_t n = 0, k;
    uint64_t seq = ++host->reqseq;
    unsigned idx = host->index < 0 ? 0 : (unsigned)host->index;
    char digits[24];

    for (int i = 7; i >= 0; i--)
        tmp[n++] = hex[(host->id_salt >> (4 * i)) & 0xf];
    tmp[n++] = '-';
    n += sp_fmt_u64(tmp + n, idx);
    tmp[n++] = '-';
    k = 0;
    do
        digits[k++] = hex[seq & 0xf];
    while ((seq >>= 4) != 0);
    while (k > 0)
        tmp[n++] = digits[--k];
    if (cap == 0)
        return;
    if (n > cap - 1)
        n = cap - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
}

/* An X-Request-Id from the client is kept when it is short and printable. */
static void assign_id(struct sp_req *req)
{
    const char *given = sp_http_req_header(req->http, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;

    if (n > 0 && n < sizeof(req->id)) {
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++)
            ok = given[i] > 0x20 && given[i] < 0x7f && given[i] != '"' && given[i] != '\\';
        if (ok) {
            memcpy(req->id, given, n + 1);
            return;
        }
    }
    sp_req_make_id(req->w, req->id, sizeof(req->id));
}

static void preflight(struct sp_req *req, const char *path)
{
    struct sp_http_out *out = &req->out;
    const char *origin = sp_http_req_header(req->http, "Origin");
    char allow[128], methods[160];

    if (!sp_router_allow(req->w->gen->router, path, allow, sizeof(allow))) {
        send_error(req, 404, "not_found", "no such resource");
        return;
    }
    snprintf(methods, sizeof(methods), "%s, OPTIONS", allow);
    if (origin_allowed(req->w->conf, origin)) {
        sp_http_out_add(out, "Access-Control-Allow-Methods", methods);
        sp_http_out_add(out, "Access-Control-Allow-Headers",
                        "Authorization, Content-Type, Idempotency-Key, X-Request-Id");
        sp_http_out_add(out, "Access-Control-Max-Age", "600");
    }
    sp_http_out_add(out, "Allow", methods);
    send_body(req, 204, NULL, NULL, 0);
}

/* Sets the query string's parameters (decoded, with their lengths: a %00 stays a NUL byte for
 * the validator to refuse, never a cut) on the table at the top of co. As
 * evhttp_parse_query_str: "+" is a space; a part without "=" or a name makes it all void. */
static void push_query(lua_State *co, const char *query)
{
    char *copy, *save = NULL, *part;

    if (query == NULL || *query == '\0')
        return;
    for (const char *p = query; p != NULL; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        if (n > 0 && (eq == NULL || eq == p))
            return;
    }
    if ((copy = strdup(query)) == NULL)
        return;
    for (part = strtok_r(copy, "&", &save); part; part = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(part, '='), *k, *v;
        size_t klen, vlen;
        *eq = '\0';
        k = evhttp_uridecode(part, 1, &klen);
        v = evhttp_uridecode(eq + 1, 1, &vlen);
        if (k != NULL && v != NULL) {
            lua_pushlstring(co, k, klen);
            lua_pushlstring(co, v, vlen);
            lua_rawset(co, -3);
        }
        free(k);
        free(v);
    }
    free(copy);
}

/* The Lua request table. What costs (the headers table, the query's table, the params, the
 * strings of id, path and ip) is made when a script first reads it, by the metatable's
 * __index, from the request's own data, and kept in the table: a route that never reads
 * req.headers never pays for it. Reading a field gives what an eagerly built table would
 * hold; pairs(req) makes every field first (__pairs). A request table kept past its request
 * (in a module's state) holds only the fields read during it. */
static const char req_mt_key = 'q';
enum req_field { F_ID, F_METHOD, F_PATH, F_ROUTE, F_COMPAT, F_PARAMS, F_QUERY, F_HEADERS, F_IP };
static const char *const req_fields[] = {"id",     "method", "path",    "route", "compat",
                                         "params", "query",  "headers", "ip",    NULL};
_Static_assert(SP_ARRAY_LEN(req_fields) == F_IP + 2, "req_fields follows enum req_field");

/* Pushes the field name (n bytes) of req onto L; 0 when it is not one of req_fields. */
static int push_req_field(struct sp_req *req, lua_State *L, const char *name, size_t n)
{
    const struct sp_http_req *hr = req->http;
    const char *peer = NULL;
    int f;

    for (f = 0; req_fields[f] != NULL; f++)
        if (strlen(req_fields[f]) == n && memcmp(req_fields[f], name, n) == 0)
            break;
    switch ((enum req_field)f) {
    case F_ID: lua_pushstring(L, req->id); return 1;
    case F_METHOD: lua_pushstring(L, req->method); return 1;
    case F_PATH: lua_pushstring(L, hr->path); return 1;
    case F_ROUTE: lua_pushstring(L, req->route->pattern); return 1;
    case F_COMPAT: lua_pushboolean(L, req->route->compat); return 1;
    case F_PARAMS:
        lua_createtable(L, 0, req->nparams);
        for (int i = 0; i < req->nparams; i++) {
            if (req->params[i].is_int)
                lua_pushinteger(L, (lua_Integer)req->params[i].ival);
            else
                lua_pushlstring(L, req->params[i].value, req->params[i].len);
            lua_setfield(L, -2, req->params[i].name);
        }
        return 1;
    case F_QUERY:
        lua_newtable(L);
        push_query(L, hr->query);
        return 1;
    case F_HEADERS:
        lua_createtable(L, 0, hr->nheaders);
        for (int h = 0; h < hr->nheaders; h++) {
            const char *key = hr->headers[h].name;
            char lower[128];
            size_t i;
            for (i = 0; key[i] && i < sizeof(lower) - 1; i++)
                lower[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
            lower[i] = '\0';
            lua_pushlstring(L, hr->headers[h].value, hr->headers[h].value_len);
            lua_setfield(L, -2, lower);
        }
        return 1;
    case F_IP:
        if (req->w->conf->trust_proxy)
            peer = sp_http_req_header(hr, "X-Forwarded-For");
        if (peer != NULL) {
            size_t len = strcspn(peer, ", ");
            lua_pushlstring(L, peer, len < 63 ? len : 63);
        } else {
            lua_pushlstring(L, hr->peer ? hr->peer : "", hr->peer ? strnlen(hr->peer, 63) : 0);
        }
        return 1;
    default: return 0; /* not a field of the request */
    }
}

/* The request a table at idx is the Lua side of, while it runs; else NULL. */
static struct sp_req *req_of_table(lua_State *L, int idx)
{
    struct sp_req *req = sp_gen_req(L);

    if (req == NULL || req->lua_req == NULL || req->lua_req != lua_topointer(L, idx) ||
        req->http == NULL)
        return NULL;
    return req;
}

/* __index(t, k): a field not made yet is made, kept in t and returned. */
static int l_req_index(lua_State *L)
{
    struct sp_req *req = req_of_table(L, 1);
    struct sp_budget *budget;
    const char *name;
    size_t n;
    int made;

    if (req == NULL || lua_type(L, 2) != LUA_TSTRING)
        return 0;
    name = lua_tolstring(L, 2, &n);
    /* The core's own allocations, as when the table was made whole before the handler: never
     * refused by the memory cap (push_query holds malloc'd pieces while it pushes). */
    budget = req->gen->running;
    req->gen->running = NULL;
    made = push_req_field(req, L, name, n);
    req->gen->running = budget;
    if (!made)
        return 0;
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

static int l_req_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs(t): every field made, then next, t, nil. */
static int l_req_pairs(lua_State *L)
{
    struct sp_req *req = req_of_table(L, 1);

    for (int i = 0; req != NULL && req_fields[i] != NULL; i++) {
        lua_getfield(L, 1, req_fields[i]); /* made by __index unless there already */
        lua_pop(L, 1);
    }
    lua_pushcfunction(L, l_req_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Pushes the Lua request table (its fields made on first read, see above). */
static void push_request(struct sp_req *req, lua_State *co, const struct sp_match *m)
{
    req->nparams = m->nparams;
    memcpy(req->params, m->params, (size_t)m->nparams * sizeof(m->params[0]));
    lua_createtable(co, 0, 4); /* room for body, user and a few fields read */
    if (lua_rawgetp(co, LUA_REGISTRYINDEX, &req_mt_key) != LUA_TTABLE) {
        lua_pop(co, 1);
        lua_createtable(co, 0, 3);
        lua_pushcfunction(co, l_req_index);
        lua_setfield(co, -2, "__index");
        lua_pushcfunction(co, l_req_pairs);
        lua_setfield(co, -2, "__pairs");
        lua_pushboolean(co, 0);
        lua_setfield(co, -2, "__metatable"); /* shared by every request: not to be changed */
        lua_pushvalue(co, -1);
        lua_rawsetp(co, LUA_REGISTRYINDEX, &req_mt_key);
    }
    lua_setmetatable(co, -2);
    req->lua_req = lua_topointer(co, -1);
}

static int is_json_type(const char *ctype)
{
    size_t n;

    if (ctype == NULL)
        return 0;
    n = strcspn(ctype, ";");
    while (n > 0 && ctype[n - 1] == ' ')
        n--;
    return (n == 16 && strncasecmp(ctype, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ctype + n - 5, "+json", 5) == 0);
}

/* Pushes the body onto co: nil, or the decoded object; or replies an error and returns -1. */
static int push_body(struct sp_req *req, lua_State *co, const char *method, lua_State *L,
                     int raw)
{
    size_t len = req->http->body_len;
    const char *ctype;
    const char *data;
    sp_err err;

    SP_UNUSED(L);
    if (len == 0) {
        lua_pushnil(co);
        return 0;
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        send_error(req, 400, "bad_request", "a GET request must not carry a body");
        return -1;
    }
    data = req->http->body;
    if (raw) {
        lua_pushlstring(co, data, len);
        return 0;
    }
    ctype = sp_http_req_header(req->http, "Content-Type");
    if (!is_json_type(ctype)) {
        send_error(req, 415, "unsupported_media_type",
                   "the request body must be JSON (Content-Type: application/json)");
        return -1;
    }
    if (sp_json_decode(co, data, len, SP_JSON_MAX_DEPTH, &err) != 0) {
        send_error(req, 400, "invalid_json", err.msg);
        return -1;
    }
    if (!lua_istable(co, -1) || lua_getmetatable(co, -1)) {
        send_error(req, 400, "invalid_json", "the request body must be a JSON object");
        return -1;
    }
    return 0;
}

/* Verifies the bearer token; pushes the claims table, or replies 401 and returns -1. */
static int push_claims(struct sp_req *req, lua_State *co)
{
    const char *h = sp_http_req_header(req->http, "Authorization");
    const struct sp_conf *c = req->w->conf;
    struct sp_jwt_conf jc = {(const unsigned char *)c->jwt_secret, strlen(c->jwt_secret),
                             c->token_lifetime_s, c->leeway_s};
    struct sp_jwt_claims claims;
    sp_err err;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        sp_http_out_add(&req->out, "WWW-Authenticate", "Bearer");
        send_error(req, 401, "missing_token", "authentication required: send a Bearer token");
        return -1;
    }
    if (req->w->jwt_cache == NULL)
        req->w->jwt_cache = sp_jwt_cache_new(SP_JWT_CACHE_SIZE); /* NULL: verified every time */
    /* The precise clock: time() reads the coarse one, a tick behind, and a token issued
     * elsewhere this very second would not be valid yet for it (nbf, with leeway 0). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (sp_jwt_verify_cached(req->w->jwt_cache, &jc, h + 7, ts.tv_sec, &claims, &err) != 0) {
        sp_http_out_add(&req->out, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        char msg[300];
        snprintf(msg, sizeof(msg), "invalid token: %s", err.msg);
        send_error(req, 401, "invalid_token", msg);
        return -1;
    }
    lua_createtable(co, 0, 4);
    lua_pushinteger(co, claims.sub);
    lua_setfield(co, -2, "sub");
    lua_pushstring(co, claims.role);
    lua_setfield(co, -2, "role");
    lua_pushstring(co, claims.jti);
    lua_setfield(co, -2, "jti");
    lua_pushinteger(co, claims.exp);
    lua_setfield(co, -2, "exp");
    return 0;
}

/* A zeroed request: a spare one (its header and body buffers kept, emptied) or a new one. */
static struct sp_req *req_new(struct sp_host *host)
{
    struct sp_req *req;
    struct sp_buf head, body;

    if (host->nspare_req == 0)
        return calloc(1, sizeof(*req));
    req = host->spare_req[--host->nspare_req];
    head = req->out.head;
    body = req->body;
    memset(req, 0, sizeof(*req));
    head.len = 0;
    body.len = 0;
    req->out.head = head;
    req->body = body;
    return req;
}

void sp_req_arrive(struct sp_host *w, struct sp_http_conn *c, struct sp_http_req *hr)
{
    struct sp_req *req = req_new(w);
    const char *method = hr->method, *path = hr->path;
    struct sp_match m;
    struct sp_gen *gen;
    lua_State *L, *co;

    if (req == NULL) {
        struct sp_http_out out = {0};
        sp_http_out_add(&out, "Content-Type", "application/json; charset=utf-8");
        sp_http_respond(c, hr, 503, &out, "{\"error\":\"out of memory\",\"code\":\"overloaded\"}",
                        48);
        sp_buf_free(&out.head);
        return;
    }
    req->w = w;
    req->conn = c;
    req->http = hr;
    hr->data = req;
    req->start_us = sp_now_us();
    req->co_ref = LUA_NOREF;
    {
        size_t mlen = strnlen(method, sizeof(req->method) - 1);
        memcpy(req->method, method, mlen);
        req->method[mlen] = '\0';
    }
    w->inflight++;
    req->gen = gen = w->gen;
    assign_id(req);
    if (gen == NULL) { /* the scripts failed to load at start-up: the worker tries again */
        sp_http_out_add(&req->out, "Retry-After", "1");
        send_error(req, 503, "scripts_unavailable",
                   "the scripts failed to load; this worker answers again once they do");
        goto done;
    }
    sp_gen_ref(gen);
    if (path == NULL || path[0] != '/') {
        send_error(req, 400, "bad_request", "malformed request path");
        goto done;
    }
    if (strcmp(method, "OPTIONS") == 0) {
        preflight(req, path);
        goto done;
    }
    switch (sp_router_match(gen->router, method, path, &m)) {
    case SP_MATCH_NOT_FOUND: send_error(req, 404, "not_found", "no such resource"); goto done;
    case SP_MATCH_BAD_METHOD:
        sp_http_out_add(&req->out, "Allow", m.allow);
        send_error(req, 405, "method_not_allowed", "method not allowed on this resource");
        goto done;
    case SP_MATCH_OK: break;
    }
    req->route = m.route;
    if (m.route->etag && strcmp(method, "GET") == 0 && cache_answer(req, path, hr->query))
        goto done;
    L = gen->L;
    req->co = co = co_take(req);
    sp_gen_set_req(co, req);
    sp_gen_arm_limits(gen, co);

    lua_rawgeti(co, LUA_REGISTRYINDEX, gen->run_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, m.route->ref);
    push_request(req, co, &m);
    int raw = m.route->raw_body;
    if (push_body(req, co, method, L, raw) != 0)
        goto done;
    if (lua_isnil(co, -1))
        lua_pop(co, 1); /* absent is nil */
    else
        lua_setfield(co, -2, raw ? "raw_body" : "body");
    if (m.route->auth) {
        if (push_claims(req, co) != 0)
            goto done;
    } else {
        lua_pushnil(co);
    }
    sp_req_start(req, 3);
    return;
done:
    req_finish(req);
}
