/* lua_http.c: spacer.http — outbound HTTP and HTTPS for scripts, on the worker's loop.
 * libevent's HTTP client over a plain or an OpenSSL bufferevent; names resolved by an
 * evdns_base (never the blocking getaddrinfo); certificates verified (chain, host name, SNI)
 * unless [http_client] verify = off. A call yields the request's coroutine. libevent's
 * callbacks only record the outcome in C memory; a separate event, outside libevent's HTTP
 * code, frees the connection and resumes the coroutine, whose continuation turns the outcome
 * into Lua values (so a memory error there is a script error, never a crash). Every call has
 * a deadline, a cap on the response's size, and a cap on the number of calls per request. */
#include "lua_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <math.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "conf.h"
#include "gen.h"
#include "log.h"
#include "metrics.h"
#include "req.h"

#define MAX_HEADERS_SIZE (64 * 1024) /* of a response's status line and headers */
#define MAX_TIMEOUT_S    600.0

/* The worker's client: one resolver and one TLS context for every call. */
struct sp_httpc {
    struct event_base *base;
    struct evdns_base *dns;
    SSL_CTX *ssl;
};

/* One call in flight. Owned by this module from the call until the continuation has read it
 * (or the request ended first: call_cancel). */
struct http_call {
    struct sp_req *req;
    struct evhttp_connection *evcon; /* owns the bufferevent and the SSL */
    struct event *deadline, *finish;
    char host[256];
    int port;
    int https;
    int done;     /* an outcome is recorded: finish is active or has run */
    int refused;  /* the connection failed before any byte (libevent's cleanup path) */
    int ev_error; /* enum evhttp_request_error + 1; 0: none */
    int sys_errno;
    int tls_started, tls_done;
    char tls_error[160];
    double timeout_s;
    size_t max_response;
    /* the outcome */
    int status;
    struct sp_buf headers; /* "name\0value\0" pairs, names lower-case */
    struct evbuffer *body;
    char err[640]; /* a transport failure: "" on success */
};

/* ---- the worker's client ----------------------------------------------------------- */

/* Records why a certificate was refused (the handshake's error says only "certificate
 * verify failed"). */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct http_call *call = ssl ? SSL_get_app_data(ssl) : NULL;

    if (!ok && call != NULL && call->tls_error[0] == '\0')
        snprintf(call->tls_error, sizeof(call->tls_error), "certificate verify failed: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
    return ok;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    struct http_call *call = SSL_get_app_data(ssl);

    SP_UNUSED(ret);
    if (call != NULL && (where & SSL_CB_HANDSHAKE_DONE))
        call->tls_done = 1;
}

/* Anything read from the server (a record header, even a bad one) means the connection was
 * made: a failure after it is TLS's, before it the connection's. */
static void
msg_cb(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    struct http_call *call = arg;

    SP_UNUSED(version);
    SP_UNUSED(content_type);
    SP_UNUSED(buf);
    SP_UNUSED(len);
    SP_UNUSED(ssl);
    if (!write_p && call != NULL)
        call->tls_started = 1;
}

static SSL_CTX *ssl_ctx_new(const struct sp_conf *conf, sp_err *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    const char *file = conf->http_ca_file;

    if (ctx == NULL) {
        sp_err_set(err, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, conf->http_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
    /* The bundle is read now, once: the hashed directory lookup would read files on the loop
     * during handshakes. */
    if (file[0] == '\0')
        file = X509_get_default_cert_file();
    if (SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
        if (conf->http_ca_file[0] != '\0' || SSL_CTX_set_default_verify_paths(ctx) != 1) {
            char why[160];
            ERR_error_string_n(ERR_get_error(), why, sizeof(why));
            sp_err_set(err, "cannot read the CA file %s: %s", file, why);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    ERR_clear_error();
    return ctx;
}

void sp_httpc_free(struct sp_httpc *hc)
{
    if (hc == NULL)
        return;
    if (hc->dns != NULL)
        evdns_base_free(hc->dns, 0);
    SSL_CTX_free(hc->ssl);
    free(hc);
}

static struct sp_httpc *httpc_new(struct sp_host *w, sp_err *err)
{
    struct sp_httpc *hc = calloc(1, sizeof(*hc));

    if (hc == NULL) {
        sp_err_set(err, "out of memory");
        return NULL;
    }
    hc->base = w->base;
    hc->dns = evdns_base_new(w->base,
                             EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (hc->dns == NULL) /* no usable resolv.conf: numeric addresses and /etc/hosts still work */
        hc->dns = evdns_base_new(w->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (hc->dns == NULL) {
        sp_err_set(err, "cannot create a name resolver");
        goto fail;
    }
    if ((hc->ssl = ssl_ctx_new(w->conf, err)) == NULL)
        goto fail;
    return hc;
fail:
    sp_httpc_free(hc);
    return NULL;
}

int sp_httpc_start(struct sp_host *w, sp_err *err)
{
    if (w->httpc == NULL && (w->httpc = httpc_new(w, err)) == NULL)
        return -1;
    return 0;
}

/* ---- a call's life ----------------------------------------------------------------- */

static void call_release_io(struct http_call *call)
{
    if (call->evcon != NULL) {
        evhttp_connection_free(call->evcon); /* and a request still queued: no callbacks */
        call->evcon = NULL;
    }
    if (call->deadline != NULL) {
        event_free(call->deadline);
        call->deadline = NULL;
    }
}

static void call_free(struct http_call *call)
{
    call_release_io(call);
    if (call->finish != NULL)
        event_free(call->finish);
    if (call->body != NULL)
        evbuffer_free(call->body);
    sp_buf_free(&call->headers);
    free(call);
}

/* The request ended while the call was in flight: stop it and forget it. */
static void call_cancel(void *arg)
{
    call_free(arg);
}

static void call_record(struct http_call *call)
{
    if (call->done)
        return;
    call->done = 1;
    event_active(call->finish, EV_TIMEOUT, 1);
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct http_call *call = arg;

    call->ev_error = (int)e + 1;
    call->sys_errno = errno;
}

/* libevent's request callback: NULL or a request without a status when the call failed. */
static void on_response(struct evhttp_request *r, void *arg)
{
    struct http_call *call = arg;
    struct evkeyval *kv;

    if (call->done)
        return;
    if (r == NULL || evhttp_request_get_response_code(r) == 0) {
        if (r != NULL && call->ev_error == 0) {
            call->refused = 1; /* the connect failed: libevent's cleanup path */
            call->sys_errno = errno;
        }
        call_record(call);
        return;
    }
    call->status = evhttp_request_get_response_code(r);
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(r), next)
    {
        for (const char *p = kv->key; *p; p++)
            sp_buf_addc(&call->headers, (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p));
        sp_buf_addc(&call->headers, '\0');
        sp_buf_add(&call->headers, kv->value, strlen(kv->value) + 1);
    }
    evbuffer_add_buffer(call->body, evhttp_request_get_input_buffer(r));
    call_record(call);
}

/* Says what went wrong, in the words of the API: "timeout", "connection refused", "tls",
 * "dns", "too large" or "error", then the detail. */
static void classify(struct http_call *call)
{
    struct bufferevent *bev = call->evcon ? evhttp_connection_get_bufferevent(call->evcon) : NULL;
    int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
    unsigned long ssl_err = (bev && call->https) ? bufferevent_get_openssl_error(bev) : 0;
    char *e = call->err;
    size_t cap = sizeof(call->err);

    if (call->ev_error == EVREQ_HTTP_TIMEOUT + 1) {
        snprintf(e, cap, "timeout: no response from %s:%d within %g s", call->host, call->port,
                 call->timeout_s);
    } else if (call->ev_error == EVREQ_HTTP_DATA_TOO_LONG + 1) {
        snprintf(e, cap, "too large: the response from %s:%d exceeds %zu bytes", call->host,
                 call->port, call->max_response);
    } else if (call->ev_error == EVREQ_HTTP_INVALID_HEADER + 1) {
        /* libevent says the same for both */
        snprintf(e, cap,
                 "error: %s:%d answered a malformed status line or headers, or headers "
                 "over %d bytes",
                 call->host, call->port, MAX_HEADERS_SIZE);
    } else if (dns != 0) {
        snprintf(e, cap, "dns: cannot resolve %s: %s", call->host, evutil_gai_strerror(dns));
    } else if (call->tls_error[0] != '\0') {
        snprintf(e, cap, "tls: %s:%d: %s", call->host, call->port, call->tls_error);
    } else if (call->refused || call->sys_errno == ECONNREFUSED) {
        snprintf(e, cap, "connection refused: %s:%d", call->host, call->port);
    } else if (call->https && !call->tls_done) {
        char why[120] = "the connection closed during the handshake";
        if (call->tls_started && ssl_err != 0 && !ERR_SYSTEM_ERROR(ssl_err))
            ERR_error_string_n(ssl_err, why, sizeof(why));
        snprintf(e, cap, "tls: %s:%d: %s", call->host, call->port, why);
    } else if (call->ev_error == EVREQ_HTTP_EOF + 1) {
        snprintf(e, cap, "error: %s:%d closed the connection before a complete response",
                 call->host, call->port);
    } else {
        snprintf(e, cap, "error: the call to %s:%d failed", call->host, call->port);
    }
    ERR_clear_error();
}

/* The outcome for the metrics, from the error's first words. */
static enum sp_http_outcome outcome(const char *err)
{
    static const struct {
        const char *prefix;
        enum sp_http_outcome outcome;
    } map[] = {
        {"timeout", SP_HTTP_TIMEOUT}, {"connection refused", SP_HTTP_REFUSED}, {"tls", SP_HTTP_TLS},
        {"dns", SP_HTTP_DNS},         {"too large", SP_HTTP_TOO_LARGE},
    };

    if (err[0] == '\0')
        return SP_HTTP_OK;
    for (size_t i = 0; i < SP_ARRAY_LEN(map); i++)
        if (strncmp(err, map[i].prefix, strlen(map[i].prefix)) == 0)
            return map[i].outcome;
    return SP_HTTP_ERROR;
}

/* Runs on its own event, never inside libevent's HTTP code: frees the connection, resumes. */
static void call_finish(evutil_socket_t fd, short what, void *arg)
{
    struct http_call *call = arg;
    struct sp_req *req = call->req;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (call->status == 0 && call->err[0] == '\0')
        classify(call);
    metrics_http_call(outcome(call->err));
    call_release_io(call);
    req->pending--;
    req->cancel = NULL;
    req->cancel_arg = NULL;
    lua_pushlightuserdata(req->co, call);
    sp_req_resume(req, 1); /* may end the request; the continuation has read call */
    call_free(call);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct http_call *call = arg;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (call->done)
        return;
    snprintf(call->err, sizeof(call->err), "timeout: no response from %s:%d within %g s",
             call->host, call->port, call->timeout_s);
    call_release_io(call); /* stops the connection, its resolver query and handshake */
    call_record(call);
}

/* ---- spacer.http.request ------------------------------------------------------------ */

static int push_fail(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* nil, message  [-0, +2, m] */
static int push_fail(lua_State *L, const char *fmt, ...)
{
    char msg[700];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

static int request_cont(lua_State *L, int status, lua_KContext ctx)
{
    struct http_call *call = lua_touserdata(L, -1);
    const char *p, *end;
    size_t len;

    SP_UNUSED(status);
    SP_UNUSED(ctx);
    lua_pop(L, 1);
    if (call->err[0] != '\0')
        return push_fail(L, "%s", call->err);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, call->status);
    lua_setfield(L, -2, "status");
    lua_newtable(L);
    p = call->headers.data;
    end = p ? p + call->headers.len : p;
    while (p != NULL && p < end) {
        const char *name = p, *value = p + strlen(p) + 1;
        p = value + strlen(value) + 1;
        if (lua_getfield(L, -1, name) == LUA_TSTRING) { /* repeated: joined, RFC 9110 5.3 */
            lua_pushliteral(L, ", ");
            lua_pushstring(L, value);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, value);
        }
        lua_setfield(L, -2, name);
    }
    lua_setfield(L, -2, "headers");
    len = evbuffer_get_length(call->body);
    lua_pushlstring(L, len ? (const char *)evbuffer_pullup(call->body, -1) : "", len);
    lua_setfield(L, -2, "body");
    return 1;
}

static int method_type(const char *m, enum evhttp_cmd_type *out)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {
        {"GET", EVHTTP_REQ_GET},         {"POST", EVHTTP_REQ_POST},     {"PUT", EVHTTP_REQ_PUT},
        {"PATCH", EVHTTP_REQ_PATCH},     {"DELETE", EVHTTP_REQ_DELETE}, {"HEAD", EVHTTP_REQ_HEAD},
        {"OPTIONS", EVHTTP_REQ_OPTIONS},
    };

    for (size_t i = 0; i < SP_ARRAY_LEN(methods); i++)
        if (strcasecmp(m, methods[i].name) == 0)
            return *out = methods[i].type, 0;
    return -1;
}

static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(*s > 0x20 && *s < 0x7f) || strchr("()<>@,;:\\\"/[]?={}", *s) != NULL)
            return 0;
    return 1;
}

/* Names the client sets itself. */
static int is_framing_header(const char *name)
{
    return strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
           strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Host") == 0;
}

/* Checks opts.headers (at index idx: a table or nil) before anything is allocated: raises on
 * a bad name or value (a header injection is a script's bug, not a transport failure). */
static void check_headers(lua_State *L, int idx)
{
    if (lua_isnil(L, idx))
        return;
    if (!lua_istable(L, idx))
        luaL_error(L, "spacer.http.request: headers must be a table of name = value");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* Stack: ..., name, value */
        const char *name, *value;
        size_t len;
        if (lua_type(L, -2) != LUA_TSTRING || !is_token(lua_tostring(L, -2)))
            luaL_error(L, "spacer.http.request: bad header name %s",
                       lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a string)");
        name = lua_tostring(L, -2);
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "spacer.http.request: header %s must be a string", name);
        lua_pushvalue(L, -1);
        value =
            lua_tolstring(L, -1, &len); /* a copy: tostring on a number must not touch the key */
        if (strpbrk(value, "\r\n") != NULL || strlen(value) != len)
            luaL_error(L, "spacer.http.request: header %s has a line break or a NUL", name);
        lua_pop(L, 2);
    }
}

/* Copies the checked headers (index idx) to the request, but those the client sets itself. */
static void add_headers(lua_State *L, int idx, struct evkeyvalq *out, int *has_agent)
{
    if (lua_isnil(L, idx))
        return;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *name = lua_tostring(L, -2);
        lua_pushvalue(L, -1);
        if (!is_framing_header(name)) {
            if (strcasecmp(name, "User-Agent") == 0)
                *has_agent = 1;
            evhttp_add_header(out, name, lua_tostring(L, -1));
        }
        lua_pop(L, 2);
    }
}

/* Reads a string field of opts (or nil); raises when it is something else. */
static const char *opt_string(lua_State *L, const char *field, size_t *len)
{
    const char *s;

    lua_getfield(L, 1, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "spacer.http.request: %s must be a string", field);
    s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* opts still holds it */
    return s;
}

/* spacer.http.request{method, url, headers, body, timeout} -> res | nil, err  (yields)
 * res = {status =, headers = {lower-case name = value}, body =}; a transport failure gives
 * nil and a message starting with timeout, connection refused, tls, dns, too large,
 * too many requests, invalid url or error. A bad argument raises. */
static int l_http_request(lua_State *L)
{
    struct sp_req *req = sp_gen_req(L);
    const struct sp_conf *conf;
    const char *method_s, *url, *body, *scheme, *host, *path, *query;
    size_t body_len = 0, url_len = 0, method_len = 0;
    enum evhttp_cmd_type method = EVHTTP_REQ_GET;
    double timeout_s;
    struct evhttp_uri *uri = NULL;
    struct http_call *call = NULL;
    struct bufferevent *bev = NULL;
    struct evhttp_request *hreq = NULL;
    struct evkeyvalq *out;
    struct sp_buf target = {0};
    struct timeval tv;
    char hostport[300], bare[256];
    int has_agent = 0, port, https;
    sp_err err;

    if (req == NULL || req->w == NULL)
        return luaL_error(L, "spacer.http.request: no network calls while scripts load; call it "
                             "from a route, a timer or a test");
    conf = req->w->conf;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    method_s = opt_string(L, "method", &method_len);
    if (method_s != NULL && (strlen(method_s) != method_len || method_type(method_s, &method) != 0))
        return luaL_error(L, "spacer.http.request: unknown method %s", method_s);
    if ((url = opt_string(L, "url", &url_len)) == NULL)
        return luaL_error(L, "spacer.http.request: url is required");
    if (strlen(url) != url_len)
        return push_fail(L, "invalid url: it holds a NUL byte");
    body = opt_string(L, "body", &body_len);
    lua_getfield(L, 1, "timeout");
    timeout_s = conf->http_timeout_s;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0) ||
            lua_tonumber(L, -1) > MAX_TIMEOUT_S)
            return luaL_error(L, "spacer.http.request: timeout must be seconds from 0 to %d",
                              (int)MAX_TIMEOUT_S);
        timeout_s = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "headers"); /* index 2 */
    check_headers(L, 2);

    uri = evhttp_uri_parse_with_flags(url, 0);
    if (uri == NULL)
        return push_fail(L, "invalid url: %.200s", url);
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    https = scheme != NULL && strcasecmp(scheme, "https") == 0;
    if (scheme == NULL || (!https && strcasecmp(scheme, "http") != 0)) {
        evhttp_uri_free(uri);
        return push_fail(L, "invalid url: only http:// and https:// (%.200s)", url);
    }
    if (host == NULL || host[0] == '\0' || strlen(host) >= sizeof(bare)) {
        evhttp_uri_free(uri);
        return push_fail(L, "invalid url: no host (%.200s)", url);
    }
    if (host[0] == '[') { /* an IPv6 literal: connect to the address inside the brackets */
        snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(host + 1, "]"), host + 1);
        host = bare;
    }
    if (evhttp_uri_get_userinfo(uri) != NULL) {
        evhttp_uri_free(uri);
        return push_fail(L, "invalid url: credentials belong in an Authorization header");
    }
    port = evhttp_uri_get_port(uri);
    if (port <= 0)
        port = https ? 443 : 80;
    path = evhttp_uri_get_path(uri);
    query = evhttp_uri_get_query(uri);
    sp_buf_adds(&target, path && path[0] ? path : "/");
    if (query != NULL)
        sp_buf_printf(&target, "?%s", query);
    if (strchr(host, ':') != NULL) /* an IPv6 literal */
        snprintf(hostport, sizeof(hostport), "[%s]", host);
    else
        snprintf(hostport, sizeof(hostport), "%s", host);
    if (port != (https ? 443 : 80))
        snprintf(hostport + strlen(hostport), sizeof(hostport) - strlen(hostport), ":%d", port);

    if (req->http_calls >= conf->http_max_calls) {
        evhttp_uri_free(uri);
        sp_buf_free(&target);
        return push_fail(L,
                         "too many requests: at most %d outbound calls per request "
                         "(http_client.max_calls_per_request)",
                         conf->http_max_calls);
    }
    if (sp_httpc_start(req->w, &err) != 0) {
        evhttp_uri_free(uri);
        sp_buf_free(&target);
        return push_fail(L, "error: %s", err.msg);
    }

    if ((call = calloc(1, sizeof(*call))) == NULL || (call->body = evbuffer_new()) == NULL ||
        (call->finish = event_new(req->w->base, -1, 0, call_finish, call)) == NULL ||
        (call->deadline = evtimer_new(req->w->base, on_deadline, call)) == NULL)
        goto nomem;
    call->req = req;
    snprintf(call->host, sizeof(call->host), "%s", host);
    call->port = port;
    call->https = https;
    call->timeout_s = timeout_s;
    call->max_response = conf->http_max_response;
    if (https) {
        SSL *ssl = SSL_new(req->w->httpc->ssl);
        struct in6_addr a6;
        struct in_addr a4;
        int is_ip = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
        if (ssl == NULL)
            goto nomem;
        SSL_set_app_data(ssl, call);
        SSL_set_info_callback(ssl, info_cb);
        SSL_set_msg_callback(ssl, msg_cb);
        SSL_set_msg_callback_arg(ssl, call);
        if (is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
        } else {
            SSL_set_tlsext_host_name(ssl, host);
            X509_VERIFY_PARAM_set_hostflags(SSL_get0_param(ssl),
                                            X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), host, 0);
        }
        /* CLOSE_ON_FREE: the bufferevent frees the SSL (even when its creation fails). */
        bev = bufferevent_openssl_socket_new(req->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            goto nomem;
        /* Many servers close without close_notify; bodies are framed by HTTP anyway. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    call->evcon = evhttp_connection_base_bufferevent_new(req->w->base, req->w->httpc->dns, bev,
                                                         host, (unsigned short)port);
    if (call->evcon == NULL) {
        if (bev != NULL)
            bufferevent_free(bev);
        goto nomem;
    }
    bev = NULL; /* the connection's */
    tv.tv_sec = (time_t)timeout_s;
    tv.tv_usec = (suseconds_t)((timeout_s - floor(timeout_s)) * 1e6);
    evhttp_connection_set_timeout_tv(call->evcon, &tv);
    evhttp_connection_set_retries(call->evcon, 0);
    evhttp_connection_set_max_headers_size(call->evcon, MAX_HEADERS_SIZE);
    evhttp_connection_set_max_body_size(call->evcon, (ev_ssize_t)conf->http_max_response);

    if ((hreq = evhttp_request_new(on_response, call)) == NULL)
        goto nomem;
    evhttp_request_set_error_cb(hreq, on_error);
    out = evhttp_request_get_output_headers(hreq);
    evhttp_add_header(out, "Host", hostport);
    add_headers(L, 2, out, &has_agent);
    if (!has_agent)
        evhttp_add_header(out, "User-Agent", "Spacer/" SP_VERSION);
    evhttp_add_header(out, "Connection", "close");
    if (body != NULL || method == EVHTTP_REQ_POST || method == EVHTTP_REQ_PUT ||
        method == EVHTTP_REQ_PATCH) {
        char n[32];
        snprintf(n, sizeof(n), "%zu", body_len);
        evhttp_add_header(out, "Content-Length", n);
        if (body_len > 0)
            evbuffer_add(evhttp_request_get_output_buffer(hreq), body, body_len);
    }
    evhttp_uri_free(uri);
    uri = NULL;

    req->http_calls++;
    req->pending++;
    req->cancel = call_cancel;
    req->cancel_arg = call;
    tv.tv_sec = (time_t)timeout_s;
    tv.tv_usec = (suseconds_t)((timeout_s - floor(timeout_s)) * 1e6);
    evtimer_add(call->deadline, &tv);
    /* libevent may run the callbacks before this returns (a refused local connect): they only
     * record the outcome; finish runs on the next turn of the loop. */
    if (evhttp_make_request(call->evcon, hreq, method, target.data) != 0 && !call->done) {
        snprintf(call->err, sizeof(call->err), "error: cannot start a call to %s:%d", call->host,
                 call->port);
        call_record(call);
    }
    sp_buf_free(&target);
    return lua_yieldk(L, 0, 0, request_cont);

nomem:
    if (hreq != NULL)
        evhttp_request_free(hreq);
    if (call != NULL)
        call_free(call);
    evhttp_uri_free(uri);
    sp_buf_free(&target);
    return push_fail(L, "error: out of memory");
}

/* spacer.http.calls_left() -> n: the calls this request (timer run, test) may still make;
 * 0 while the scripts load. A batch job sizes its batch with it. */
static int l_http_calls_left(lua_State *L)
{
    struct sp_req *req = sp_gen_req(L);
    int left = 0;

    if (req != NULL && req->w != NULL && req->w->conf->http_max_calls > req->http_calls)
        left = req->w->conf->http_max_calls - req->http_calls;
    lua_pushinteger(L, left);
    return 1;
}

void sp_lua_open_http(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"request", l_http_request},
        {"calls_left", l_http_calls_left},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "http");
}
