/* worker.h: a worker process — its loop, HTTP server, PostgreSQL pool, hasher and current
 * script generation — and the request that runs a route's handler in a coroutine. */
#ifndef SP_WORKER_H
#define SP_WORKER_H

#include <lua.h>
#include <stdint.h>
#include <sys/types.h>

#include "router.h"
#include "sp.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;
struct sp_conf;
struct sp_gen;
struct sp_pgconn;
struct sp_pool;
struct sp_hasher;
struct sp_httpc;

struct sp_worker {
    const struct sp_conf *conf;
    int index;
    pid_t pid;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *listener;
    struct sp_gen *gen; /* current generation (the worker holds one reference); NULL while
                         * the scripts on disk fail to load: every request is a 503 */
    uint64_t next_gen;
    char last_reload_error[512];
    struct sp_pool *pool;
    struct sp_hasher *hasher;
    struct sp_httpc *httpc; /* outbound HTTP (spacer.http), made on first use */
    int inflight;
    int draining;
    uint64_t reqseq;
    uint32_t id_salt;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *parent_check;
    struct event *retry; /* loads the scripts again while the worker has none (gen NULL) */
    int retry_s;
    int ctl_fd; /* socket to the master, -1 when none */
};

/* The one mutable global: the worker this process is (NULL in the master and the CLI). */
extern struct sp_worker *sp_worker;

enum sp_limit { SP_LIMIT_NONE, SP_LIMIT_INSTRUCTIONS, SP_LIMIT_MEMORY };

#define SP_REQ_MAX_PINS 4

/* A request in flight. Owned by the worker from its arrival until its reply is sent. */
struct sp_req {
    struct sp_worker *w;
    struct evhttp_request *ev; /* NULL for script tests run by `spacer test` */
    struct sp_gen *gen;        /* a reference, dropped at the end */
    struct sp_route *route;
    lua_State *co;
    int co_ref;
    char id[72];
    uint64_t start_us;
    int status;
    size_t bytes;
    long instructions;
    enum sp_limit limit;
    int resume_error; /* the values pushed for resume are an error to raise */
    struct sp_pgconn *pins[SP_REQ_MAX_PINS];
    int npins;
    int pending; /* asynchronous operations in flight (the coroutine waits on one) */
    /* Set while the coroutine waits on an operation that must be stopped if the request ends
     * first (an outbound HTTP call): called by the end of the request, frees what it holds. */
    void (*cancel)(void *arg);
    void *cancel_arg;
    int http_calls; /* outbound calls made so far (capped per request) */
    void (*on_done)(struct sp_req *req, int ok); /* script tests: called instead of replying */
    void *on_done_arg;
    sp_err err;
};

int sp_worker_run(const struct sp_conf *conf, int index, int listen_fd, int ctl_fd);

/* Resumes the request's coroutine with nargs values pushed on req->co. */
void sp_req_resume(struct sp_req *req, int nargs);
/* Starts the handler of a matched route; for `spacer test` as for HTTP. */
void sp_req_start(struct sp_req *req, int nargs);
void sp_req_release_pins(struct sp_req *req);

#endif
