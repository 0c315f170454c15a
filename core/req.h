/* req.h: a request's life — id, CORS, routing, token, the handler's coroutine, the reply, the
 * access log — between the HTTP connection below (http.h) and the Lua bindings above, which
 * wait and resume a request only through this interface.
 *
 * The host is what a request runs on: a worker serving HTTP, or the runner of `spacer test`.
 * It owns the loop and the services a binding may call (pool, hasher) and the current
 * generation. */
#ifndef SP_REQ_H
#define SP_REQ_H

#include <lua.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

#include "cache.h"
#include "gen.h"
#include "http.h"
#include "router.h"
#include "sp.h"

struct event_base;
struct sp_conf;
struct sp_gen;
struct sp_pgconn;
struct sp_pool;
struct sp_hasher;
struct sp_httpc;
struct sp_listen;
struct sp_req;

/* What the operations bindings (spacer.ops) may ask of the process. Set by the worker; NULL in
 * the runner. */
struct sp_ops {
    /* Asks the master to reload every worker. Returns 0 when done(req, answer, failure) will run
     * later on the loop (answer: the master's JSON; failure: a message, answer then NULL). */
    int (*reload)(void *ctx, struct sp_req *req,
                  void (*done)(struct sp_req *req, const char *answer, size_t len,
                               const char *failure));
    void *ctx;
};

#define SP_HOST_SPARE_REQS 8
#define SP_REQ_KEEP_BODY 32768 /* a spare request keeps a body buffer up to this size */

struct sp_host {
    const struct sp_conf *conf;
    int index; /* the worker's number (0 in the runner) */
    pid_t pid;
    struct event_base *base;
    struct sp_gen *gen; /* current generation (the host holds one reference) */
    struct sp_pool *pool;
    struct sp_hasher *hasher;
    struct sp_jwt_cache *jwt_cache; /* verified tokens, made on first use (NULL: none yet) */
    struct sp_httpc *httpc; /* outbound HTTP (spacer.http), made on first use */
    struct sp_cache *cache;   /* public GET answers; NULL when off (and in the runner) */
    struct sp_listen *listen; /* change notifications: keep cache and the scripts' copies current */
    const struct sp_ops *ops;
    int inflight; /* requests not yet finished */
    int draining;
    uint64_t reqseq;
    uint32_t id_salt;
    void (*on_idle)(struct sp_host *host); /* inflight fell to 0 while draining */
    /* Buffered access lines (log.c holds them): written when the oldest has waited
     * log_flush_tv, or when the loop has nothing else to do (log_idle, the lowest priority). */
    struct event *log_flush, *log_idle;
    struct timeval log_flush_tv;
    /* Finished requests kept for the next ones (with their reply's header and body buffers). */
    struct sp_req *spare_req[SP_HOST_SPARE_REQS];
    int nspare_req;
};

#define SP_REQ_MAX_PINS 4

/* A request in flight. Owned by the host from its arrival until it is finished. */
struct sp_req {
    struct sp_host *w;
    struct sp_http_conn *conn; /* NULL for script tests run by `spacer test`, and once cancelled */
    struct sp_http_req *http;
    struct sp_gen *gen;        /* a reference, dropped at the end */
    struct sp_route *route;
    lua_State *co;
    int co_ref;
    char id[72];
    uint64_t start_us;
    int status;
    size_t bytes;
    struct sp_budget budget; /* instructions spent, the limit hit */
    int resume_error; /* the values pushed for resume are an error to raise */
    struct sp_pgconn *pins[SP_REQ_MAX_PINS];
    int npins;
    int pending; /* asynchronous operations in flight (the coroutine waits on one) */
    int cancelled; /* the client went away: completions are discarded until pending is 0 */
    /* Set while the coroutine waits on an operation that can be stopped (an outbound call):
     * called once if the request is cancelled or ends first; the operation then never
     * completes, and it is counted off pending. */
    void (*cancel)(void *arg);
    void *cancel_arg;
    int http_calls; /* outbound calls made so far (capped per request) */
    void (*on_done)(struct sp_req *req, int ok); /* script tests: called instead of replying */
    void *on_done_arg;
    struct sp_http_out out; /* the reply's headers */
    struct sp_buf body;     /* the reply's JSON text; like out, kept with a spare request */
    int etag;        /* the route's GET answer gets an ETag (and may be a 304) */
    char *cache_key; /* non-NULL: store the answer under it, with cache_versions */
    uint64_t cache_versions[SP_CACHE_MAX_TAGS];
    char method[16];
    /* The Lua request table (its identity: lazily made fields are read from here while it
     * runs) and the route's parameters (pointing into the request's path). */
    const void *lua_req;
    int nparams;
    struct sp_param params[SP_ROUTE_MAX_PARAMS];
    sp_err err;
};

/* Resumes the request's coroutine with nargs values pushed on req->co. For a cancelled request
 * the values are dropped (and the request is freed when nothing is pending any more). */
void sp_req_resume(struct sp_req *req, int nargs);
/* Starts the handler of a matched route; for `spacer test` as for HTTP. */
void sp_req_start(struct sp_req *req, int nargs);
void sp_req_release_pins(struct sp_req *req);

/* The HTTP side, for the host: a request has arrived; the client has gone. */
void sp_req_arrive(struct sp_host *host, struct sp_http_conn *c, struct sp_http_req *hr);
void sp_req_cancel(struct sp_http_req *hr);
/* Sets up the buffered access log of spacer.conf (a worker, once its loop exists); -1 when
 * out of memory. Without it every access line is written at once. */
int sp_req_log_start(struct sp_host *host);
/* Writes the access lines still buffered; final: and frees the host's events and spare
 * requests (it ends). */
void sp_req_log_flush(struct sp_host *host, int final);
/* A fresh request id ("salt-worker-sequence"). */
void sp_req_make_id(struct sp_host *host, char *buf, size_t cap);
/* An error the HTTP layer answered itself: the access log line and the metrics. */
void sp_req_log_refused(struct sp_host *host, int status, const char *id, const char *method,
                        const char *target);

#endif
