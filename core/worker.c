/* worker.c: one worker process. Its libevent loop serves HTTP with evhttp; each request that
 * matches a route runs the route's handler in a fresh coroutine of the current generation;
 * the handler's waits (database, hashing) yield and the loop goes on serving everyone else. */
#include "worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "auth.h"
#include "conf.h"
#include "gen.h"
#include "json.h"
#include "log.h"
#include "lua_http.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "pgpool.h"
#include "timer.h"

struct sp_worker *sp_worker;

static void req_finish(struct sp_req *req);

/* ---- replies ------------------------------------------------------------------ */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

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
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req->ev), "Origin");

    evhttp_add_header(out, "X-Request-Id", req->id);
    if (origin_allowed(req->w->conf, origin)) {
        evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
        evhttp_add_header(out, "Vary", "Origin");
        evhttp_add_header(out, "Access-Control-Expose-Headers",
                          "X-Total-Count, Link, X-Request-Id, Retry-After");
    }
    if (req->w->draining)
        evhttp_add_header(out, "Connection", "close");
}

static void send_body(struct sp_req *req, int status, const char *ctype, const char *body,
                      size_t len)
{
    struct evbuffer *buf = evhttp_request_get_output_buffer(req->ev);

    common_headers(req);
    if (ctype != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Content-Type", ctype);
    if (len > 0)
        evbuffer_add(buf, body, len);
    req->status = status;
    req->bytes = len;
    evhttp_send_reply(req->ev, status, reason_phrase(status), NULL);
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
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);

    if (!lua_istable(co, idx))
        return;
    lua_pushnil(co);
    while (lua_next(co, idx) != 0) {
        if (lua_type(co, -2) == LUA_TSTRING && (lua_isstring(co, -1))) {
            const char *name = lua_tostring(co, -2);
            lua_pushvalue(co, -1);
            const char *value = lua_tostring(co, -1);
            if (strcasecmp(name, "Content-Type") == 0)
                evhttp_remove_header(out, "Content-Type");
            evhttp_add_header(out, name, value);
            lua_pop(co, 1);
        }
        lua_pop(co, 1);
    }
}

static int has_header(struct sp_req *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_output_headers(req->ev), name) != NULL;
}

/* The handler returned: status, body[, headers] are at 1..n on the coroutine. */
static void reply_results(struct sp_req *req, int nres)
{
    lua_State *co = req->co;
    struct sp_buf b = {0};
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
    if (lua_type(co, 2) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(co, 2, &len);
        send_body(req, status, has_header(req, "Content-Type") ? NULL : "text/plain; charset=utf-8",
                  s, len);
        return;
    }
    if (sp_json_encode(co, 2, &b, SP_JSON_MAX_DEPTH, &err) != 0) {
        sp_log(SP_LOG_ERROR, "%s %s: %s", req->id, req->route->source, err.msg);
        send_error(req, 500, "script_error", "internal error");
    } else {
        send_body(req, status,
                  has_header(req, "Content-Type") ? NULL : "application/json; charset=utf-8",
                  b.data, b.len);
    }
    sp_buf_free(&b);
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

    if (req->limit != SP_LIMIT_NONE) {
        const char *what = req->limit == SP_LIMIT_MEMORY ? "memory" : "instruction";
        sp_log_fields(SP_LOG_ERROR, NULL, "%s %s: script %s limit exceeded; request ended",
                      req->id, where, what);
        if (req->ev != NULL)
            send_error(req, 500, "script_limit", req->limit == SP_LIMIT_MEMORY
                                                     ? "script memory limit exceeded"
                                                     : "script instruction limit exceeded");
        metrics_script_error();
        if (req->limit == SP_LIMIT_MEMORY)
            lua_gc(L, LUA_GCCOLLECT);
        return;
    }
    if (is_http_error(co, -1)) {
        if (req->ev != NULL)
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
    if (req->ev != NULL)
        send_error(req, 500, "script_error", "internal error");
}

void sp_req_resume(struct sp_req *req, int nargs)
{
    int nres = 0, st;
    struct sp_gen *gen = req->gen;

    gen->running = req;
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

/* ---- a request's way ------------------------------------------------------------- */

static void access_log(struct sp_req *req, const char *method, const char *path)
{
    char line[1024];
    size_t n = 0;
    uint64_t dur = sp_now_us() - req->start_us;

    metrics_observe(req->route ? req->route->pattern : "unmatched", method, req->status, dur);
    if (!req->w->conf->access_log)
        return;
    n = (size_t)snprintf(line, sizeof(line), "{\"type\":\"access\",\"time\":%ld,\"request_id\":\"",
                         (long)time(NULL));
    sp_json_escape(line, sizeof(line) - 200, &n, req->id);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"method\":\"%s\",\"path\":\"", method);
    sp_json_escape(line, sizeof(line) - 200, &n, path);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"route\":\"");
    sp_json_escape(line, sizeof(line) - 200, &n, req->route ? req->route->pattern : "");
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          "\",\"status\":%d,\"bytes\":%zu,\"duration_us\":%llu,\"worker\":%d}\n",
                          req->status, req->bytes, (unsigned long long)dur, req->w->index);
    sp_log_raw(line, n);
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "OTHER";
    }
}

static void req_finish(struct sp_req *req)
{
    if (req->ev != NULL) {
        const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req->ev));
        access_log(req, method_name(evhttp_request_get_command(req->ev)), path ? path : "");
    }
    if (req->cancel != NULL)
        req->cancel(req->cancel_arg); /* ended while waiting: stop what it waits on */
    sp_req_release_pins(req);
    if (req->co != NULL)
        luaL_unref(req->gen->L, LUA_REGISTRYINDEX, req->co_ref);
    sp_gen_unref(req->gen);
    free(req);
}

/* The reply has left (written to the socket): only now may a draining worker exit. */
static void on_complete(struct evhttp_request *ev, void *arg)
{
    struct sp_worker *w = arg;

    SP_UNUSED(ev);
    if (--w->inflight == 0 && w->draining)
        event_base_loopexit(w->base, NULL);
}

/* An X-Request-Id from the client is kept when it is short and printable. */
static void assign_id(struct sp_req *req)
{
    const char *given =
        evhttp_find_header(evhttp_request_get_input_headers(req->ev), "X-Request-Id");
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
    snprintf(req->id, sizeof(req->id), "%08x-%d-%llx", req->w->id_salt, req->w->index,
             (unsigned long long)++req->w->reqseq);
}

static void preflight(struct sp_req *req, const char *path)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req->ev);
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req->ev), "Origin");
    char allow[128], methods[160];

    if (!sp_router_allow(req->w->gen->router, path, allow, sizeof(allow))) {
        send_error(req, 404, "not_found", "no such resource");
        return;
    }
    snprintf(methods, sizeof(methods), "%s, OPTIONS", allow);
    if (origin_allowed(req->w->conf, origin)) {
        evhttp_add_header(out, "Access-Control-Allow-Methods", methods);
        evhttp_add_header(out, "Access-Control-Allow-Headers",
                          "Authorization, Content-Type, Idempotency-Key, X-Request-Id");
        evhttp_add_header(out, "Access-Control-Max-Age", "600");
    }
    evhttp_add_header(out, "Allow", methods);
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

/* Pushes the Lua request table. */
static void push_request(struct sp_req *req, lua_State *co, const struct sp_match *m,
                         const char *method, const char *path, const char *query)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req->ev);
    struct evkeyval *kv;
    char peer_buf[64] = "";
    const char *peer = NULL;
    ev_uint16_t port;

    lua_createtable(co, 0, 14);
    lua_pushstring(co, req->id);
    lua_setfield(co, -2, "id");
    lua_pushstring(co, method);
    lua_setfield(co, -2, "method");
    lua_pushstring(co, path);
    lua_setfield(co, -2, "path");
    lua_pushstring(co, m->route->pattern);
    lua_setfield(co, -2, "route");
    lua_pushboolean(co, m->route->compat);
    lua_setfield(co, -2, "compat");

    lua_createtable(co, 0, m->nparams);
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].is_int)
            lua_pushinteger(co, (lua_Integer)m->params[i].ival);
        else
            lua_pushlstring(co, m->params[i].value, m->params[i].len);
        lua_setfield(co, -2, m->params[i].name);
    }
    lua_setfield(co, -2, "params");

    lua_newtable(co);
    push_query(co, query);
    lua_setfield(co, -2, "query");

    lua_newtable(co);
    TAILQ_FOREACH(kv, in, next)
    {
        char name[128];
        size_t i;
        for (i = 0; kv->key[i] && i < sizeof(name) - 1; i++)
            name[i] = (char)((kv->key[i] >= 'A' && kv->key[i] <= 'Z') ? kv->key[i] + 32
                                                                      : kv->key[i]);
        name[i] = '\0';
        lua_pushstring(co, kv->value);
        lua_setfield(co, -2, name);
    }
    lua_setfield(co, -2, "headers");

    if (req->w->conf->trust_proxy)
        peer = evhttp_find_header(in, "X-Forwarded-For");
    if (peer != NULL) {
        snprintf(peer_buf, sizeof(peer_buf), "%.*s", (int)strcspn(peer, ", "), peer);
    } else {
        char *addr = NULL;
        evhttp_connection_get_peer(evhttp_request_get_connection(req->ev), &addr, &port);
        snprintf(peer_buf, sizeof(peer_buf), "%s", addr ? addr : "");
    }
    lua_pushstring(co, peer_buf);
    lua_setfield(co, -2, "ip");
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
    struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
    size_t len = evbuffer_get_length(in);
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
    data = (const char *)evbuffer_pullup(in, -1);
    if (raw) {
        lua_pushlstring(co, data, len);
        return 0;
    }
    ctype = evhttp_find_header(evhttp_request_get_input_headers(req->ev), "Content-Type");
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
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req->ev), "Authorization");
    const struct sp_conf *c = req->w->conf;
    struct sp_jwt_conf jc = {(const unsigned char *)c->jwt_secret, strlen(c->jwt_secret),
                             c->token_lifetime_s, c->leeway_s};
    struct sp_jwt_claims claims;
    sp_err err;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), "WWW-Authenticate",
                          "Bearer");
        send_error(req, 401, "missing_token", "authentication required: send a Bearer token");
        return -1;
    }
    if (sp_jwt_verify(&jc, h + 7, time(NULL), &claims, &err) != 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req->ev), "WWW-Authenticate",
                          "Bearer error=\"invalid_token\"");
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

static void on_request(struct evhttp_request *ev, void *arg)
{
    struct sp_worker *w = arg;
    struct sp_req *req = calloc(1, sizeof(*req));
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *method = method_name(evhttp_request_get_command(ev));
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct sp_match m;
    struct sp_gen *gen;
    lua_State *L, *co;

    if (req == NULL) {
        evhttp_send_error(ev, 503, "out of memory");
        return;
    }
    req->w = w;
    req->ev = ev;
    req->start_us = sp_now_us();
    req->co_ref = LUA_NOREF;
    w->inflight++;
    evhttp_request_set_on_complete_cb(ev, on_complete, w);
    req->gen = gen = w->gen;
    assign_id(req);
    if (gen == NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Retry-After", "1");
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
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", m.allow);
        send_error(req, 405, "method_not_allowed", "method not allowed on this resource");
        goto done;
    case SP_MATCH_OK: break;
    }
    req->route = m.route;
    L = gen->L;
    co = lua_newthread(L);
    req->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req->co = co;
    sp_gen_set_req(co, req);
    sp_gen_arm_limits(gen, co, req);

    lua_rawgeti(co, LUA_REGISTRYINDEX, gen->run_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, m.route->ref);
    push_request(req, co, &m, method, path, evhttp_uri_get_query(uri));
    lua_getfield(co, -2, "opts");
    lua_getfield(co, -1, "raw_body");
    int raw = lua_toboolean(co, -1);
    lua_pop(co, 2);
    if (push_body(req, co, method, L, raw) != 0)
        goto done;
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

/* ---- process ---------------------------------------------------------------------- */

/* Writes this worker's state where the master and the other workers can read it. */
static void publish(struct sp_worker *w)
{
    struct sp_worker_info *wi = metrics_worker(w->index);
    struct sp_pool_stats ps;

    if (wi == NULL)
        return;
    sp_pool_stats(w->pool, &ps);
    wi->pid = w->pid;
    wi->alive = 1;
    wi->generation = w->gen ? w->gen->number : 0;
    wi->loaded_at = w->gen ? w->gen->loaded_at : 0;
    wi->pool_total = ps.total;
    wi->pool_idle = ps.idle;
    wi->pool_busy = ps.busy;
    wi->pool_connecting = ps.connecting;
    wi->pool_queued = ps.queued;
    wi->lua_memory = w->gen ? w->gen->mem_used : 0;
}

/* Records a reload's outcome; the sequence number moves last, when the rest is written. */
static void publish_reload(struct sp_worker *w, int ok)
{
    struct sp_worker_info *wi = metrics_worker(w->index);

    if (wi == NULL)
        return;
    wi->reload_ok = ok;
    snprintf(wi->last_error, sizeof(wi->last_error), "%.*s", (int)sizeof(wi->last_error) - 1,
             w->last_reload_error);
    publish(w);
    __atomic_add_fetch(&wi->reload_seq, 1, __ATOMIC_RELEASE);
}

/* A new generation from what is on disk now: the scripts, and spacer.conf's application
 * sections (the core's settings keep their start-up values). 0, or -1 with err. */
static int load_next(struct sp_worker *w, struct sp_gen **out, sp_err *err)
{
    struct sp_conf *conf = NULL;

    if (sp_conf_reread(w->conf, &conf, NULL, 0, err) != 0)
        return -1;
    if (sp_gen_load(conf, w, w->next_gen, out, err) != 0) {
        sp_conf_free(conf);
        return -1;
    }
    (*out)->own_conf = conf;
    w->next_gen++;
    return 0;
}

/* Makes gen the current generation. */
static void install(struct sp_worker *w, struct sp_gen *gen)
{
    sp_timer_stop(w->gen);
    sp_gen_unref(w->gen); /* in-flight requests keep the old one alive */
    w->gen = gen;
    if (w->retry != NULL)
        event_del(w->retry);
    sp_timer_start(w, gen);
}

static void reload(struct sp_worker *w)
{
    struct sp_gen *gen = NULL;
    sp_err err;

    if (load_next(w, &gen, &err) != 0) {
        snprintf(w->last_reload_error, sizeof(w->last_reload_error), "%s", err.msg);
        if (w->gen != NULL)
            sp_log(SP_LOG_ERROR, "reload failed, generation %llu keeps serving: %s",
                   (unsigned long long)w->gen->number, err.msg);
        else
            sp_log(SP_LOG_ERROR, "reload failed, still no scripts (answering 503): %s", err.msg);
        metrics_reload(0);
        publish_reload(w, 0);
        return;
    }
    w->last_reload_error[0] = '\0';
    sp_log(SP_LOG_INFO, "generation %llu loaded in %.1f ms (%d routes)",
           (unsigned long long)gen->number, gen->load_us / 1000.0,
           sp_router_count(gen->router));
    install(w, gen);
    metrics_reload(1);
    publish_reload(w, 1);
}

/* While the worker has no generation: tries the scripts on disk again, backing off to 30 s. */
static void retry_load(evutil_socket_t fd, short what, void *arg)
{
    struct sp_worker *w = arg;
    struct sp_gen *gen = NULL;
    struct timeval tv = {0, 0};
    sp_err err;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (w->gen != NULL || w->draining)
        return;
    if (load_next(w, &gen, &err) != 0) {
        w->retry_s = w->retry_s >= 15 ? 30 : w->retry_s * 2;
        sp_log(SP_LOG_ERROR, "worker %d: scripts still fail to load (next try in %d s): %s",
               w->index, w->retry_s, err.msg);
        tv.tv_sec = w->retry_s;
        evtimer_add(w->retry, &tv);
        return;
    }
    sp_log(SP_LOG_INFO, "worker %d: scripts loaded: serving generation %llu (%d routes)",
           w->index, (unsigned long long)gen->number, sp_router_count(gen->router));
    install(w, gen);
    publish(w);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct sp_worker *w = arg;
    struct timeval tv;

    SP_UNUSED(what);
    if (sig == SIGHUP) {
        reload(w);
        return;
    }
    if (w->draining)
        return;
    w->draining = 1;
    sp_timer_stop(w->gen);
    if (w->retry != NULL)
        event_del(w->retry);
    sp_log(SP_LOG_INFO, "draining: %d request(s) in flight", w->inflight);
    if (w->listener != NULL) {
        evhttp_del_accept_socket(w->http, w->listener);
        w->listener = NULL;
    }
    if (w->inflight == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    tv.tv_sec = w->conf->shutdown_timeout_ms / 1000;
    tv.tv_usec = (w->conf->shutdown_timeout_ms % 1000) * 1000;
    w->drain_timer = evtimer_new(w->base, on_signal, w); /* fires as a second SIGTERM: exit */
    event_base_loopexit(w->base, &tv);
}

static void check_parent(evutil_socket_t fd, short what, void *arg)
{
    SP_UNUSED(fd);
    SP_UNUSED(what);
    publish(arg);
    if (getppid() == 1)
        on_signal(SIGTERM, 0, arg); /* the master is gone */
}

int sp_worker_run(const struct sp_conf *conf, int index, int listen_fd, int ctl_fd)
{
    struct sp_worker w = {0};
    struct sp_pool_conf pc;
    struct timeval tv = {conf->timeout_s, 0}, one_s = {1, 0};
    sp_err err;
    int rc = 1;

    sp_worker = &w;
    w.conf = conf;
    w.index = index;
    w.pid = getpid();
    w.ctl_fd = ctl_fd;
    w.next_gen = 1;
    RAND_bytes((unsigned char *)&w.id_salt, sizeof(w.id_salt));
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);

    if ((w.base = event_base_new()) == NULL || (w.http = evhttp_new(w.base)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: cannot create the event loop", index);
        goto done;
    }
    pc = (struct sp_pool_conf){conf->db_url, conf->pool_size, conf->queue_size,
                               conf->connect_timeout_ms, conf->statement_timeout_ms};
    if ((w.pool = sp_pool_new(w.base, &pc, &err)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: %s", index, err.msg);
        goto done;
    }
    if ((w.hasher = sp_hasher_new(w.base, conf->hash_threads, &err)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: %s", index, err.msg);
        goto done;
    }
    if ((w.retry = evtimer_new(w.base, retry_load, &w)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: cannot create the event loop", index);
        goto done;
    }
    /* Scripts that fail to load (edited on disk since the others loaded them, before this
     * worker's restart) do not stop the worker: it answers 503 on its listener, so what the
     * kernel queues there never hangs, and tries again until they load or a reload works. */
    if (sp_gen_load(conf, &w, w.next_gen++, &w.gen, &err) != 0) {
        struct timeval first = {1, 0};
        w.gen = NULL;
        w.retry_s = 1;
        sp_log(SP_LOG_ERROR, "worker %d: scripts failed to load (answering 503 "
               "scripts_unavailable; next try in 1 s): %s", index, err.msg);
        evtimer_add(w.retry, &first);
    }
    if (sp_httpc_start(&w, &err) != 0) /* calls will try again, and say why */
        sp_log(SP_LOG_ERROR, "worker %d: outbound HTTP unavailable: %s", index, err.msg);
    evhttp_set_max_body_size(w.http, (ev_ssize_t)conf->max_body);
    evhttp_set_max_headers_size(w.http, (ev_ssize_t)conf->max_header);
    evhttp_set_timeout_tv(w.http, &tv);
    evhttp_set_allowed_methods(w.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(w.http, NULL);
    /* Read and discard an oversized body before closing, so the client sees its 413. */
    evhttp_set_flags(w.http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_gencb(w.http, on_request, &w);
    if ((w.listener = evhttp_accept_socket_with_handle(w.http, listen_fd)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: cannot listen: %s", index, strerror(errno));
        goto done;
    }
    w.sig_term = evsignal_new(w.base, SIGTERM, on_signal, &w);
    w.sig_int = evsignal_new(w.base, SIGINT, on_signal, &w);
    w.sig_hup = evsignal_new(w.base, SIGHUP, on_signal, &w);
    w.parent_check = event_new(w.base, -1, EV_PERSIST, check_parent, &w);
    event_add(w.sig_term, NULL);
    event_add(w.sig_int, NULL);
    event_add(w.sig_hup, NULL);
    event_add(w.parent_check, &one_s);
    publish(&w);
    if (w.gen != NULL) {
        sp_log(SP_LOG_INFO, "worker %d serving, generation %llu (%d routes, %.1f ms to load)",
               index, (unsigned long long)w.gen->number, sp_router_count(w.gen->router),
               w.gen->load_us / 1000.0);
        sp_timer_start(&w, w.gen);
    }
    event_base_dispatch(w.base);
    if (w.inflight > 0)
        sp_log(SP_LOG_WARN, "worker %d: shutdown timeout with %d request(s) in flight", index,
               w.inflight);
    rc = 0;
done:
    if (w.sig_term)
        event_free(w.sig_term);
    if (w.sig_int)
        event_free(w.sig_int);
    if (w.sig_hup)
        event_free(w.sig_hup);
    if (w.parent_check)
        event_free(w.parent_check);
    if (w.retry)
        event_free(w.retry);
    if (w.drain_timer)
        event_free(w.drain_timer);
    if (w.http && w.inflight == 0)
        evhttp_free(w.http);
    if (w.inflight == 0) {
        sp_hasher_free(w.hasher);
        sp_pool_free(w.pool);
        sp_gen_unref(w.gen);
        sp_httpc_free(w.httpc);
        if (w.base)
            event_base_free(w.base);
    }
    sp_worker = NULL;
    return rc;
}
