/* worker.c: one worker process. Its libevent loop serves HTTP connections (http.c) and hosts
 * the requests (req.c) on the current script generation, the PostgreSQL pool and the hashing
 * threads; it reloads on SIGHUP and drains on SIGTERM. */
#include "worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "auth.h"
#include "cache.h"
#include "conf.h"
#include "gen.h"
#include "http.h"
#include "log.h"
#include "lua_http.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "pglisten.h"
#include "pgpool.h"
#include "req.h"
#include "timer.h"

struct sp_worker {
    struct sp_host host; /* first: the requests' view of the worker */
    const struct sp_conf *conf;
    int index;
    struct event_base *base;
    struct sp_http *http;
    uint64_t next_gen;
    char last_reload_error[512];
    struct sp_ops ops;
    char ctl_path[256];
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *parent_check;
    struct event *retry; /* loads the scripts again while the worker has none (host.gen NULL) */
    int retry_s;
    int ctl_fd; /* socket to the master, -1 when none */
    uint64_t quiet_seq; /* host.reqseq at the last tick: no request since, when unchanged */
    int trimmed;        /* memory given back since the last activity */
};

/* ---- the HTTP layer's callbacks ------------------------------------------------------ */

static void http_request(void *ctx, struct sp_http_conn *c, struct sp_http_req *r)
{
    struct sp_worker *w = ctx;

    sp_req_arrive(&w->host, c, r);
}

static void http_cancel(void *ctx, struct sp_http_req *r)
{
    SP_UNUSED(ctx);
    sp_req_cancel(r);
}

static void http_refused(void *ctx, int status, const char *id, const char *method,
                         const char *target)
{
    struct sp_worker *w = ctx;

    sp_req_log_refused(&w->host, status, id, method, target);
}

static void http_make_id(void *ctx, char *buf, size_t cap)
{
    struct sp_worker *w = ctx;

    sp_req_make_id(&w->host, buf, cap);
}

/* ---- spacer.ops.reload: a round trip to the master's control socket -------------------- */

struct reload_call {
    struct sp_req *req;
    struct bufferevent *bev;
    void (*done)(struct sp_req *req, const char *answer, size_t len, const char *failure);
    int finished;
};

static void reload_finish(struct reload_call *rc, const char *failure)
{
    struct evbuffer *in = bufferevent_get_input(rc->bev);
    size_t len = evbuffer_get_length(in);
    const char *answer = len > 0 ? (const char *)evbuffer_pullup(in, -1) : NULL;

    if (rc->finished)
        return;
    rc->finished = 1;
    rc->done(rc->req, failure ? NULL : answer, failure ? 0 : len, failure);
    bufferevent_free(rc->bev);
    free(rc);
}

static void reload_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_write(bev, "reload\n", 7);
        return;
    }
    reload_finish(arg, (what & BEV_EVENT_TIMEOUT) ? "the master did not answer in time"
                       : (what & BEV_EVENT_EOF) ? NULL
                                                : "cannot reach the master");
}

static int ops_reload(void *ctx, struct sp_req *req,
                      void (*done)(struct sp_req *req, const char *answer, size_t len,
                                   const char *failure))
{
    struct sp_worker *w = ctx;
    struct sockaddr_un sa = {0};
    struct reload_call *rc;
    struct timeval tv = {20, 0};

    if (strlen(w->ctl_path) >= sizeof(sa.sun_path) || w->ctl_path[0] == '\0')
        return -1;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, w->ctl_path, strlen(w->ctl_path) + 1);
    if ((rc = calloc(1, sizeof(*rc))) == NULL)
        return -1;
    rc->req = req;
    rc->done = done;
    rc->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (rc->bev == NULL) {
        free(rc);
        return -1;
    }
    bufferevent_setcb(rc->bev, NULL, NULL, reload_event, rc);
    bufferevent_set_timeouts(rc->bev, &tv, &tv);
    bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(rc->bev, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        bufferevent_free(rc->bev);
        free(rc);
        return -1;
    }
    return 0;
}

/* ---- process ---------------------------------------------------------------------- */

/* Writes this worker's state where the master and the other workers can read it. */
static void publish(struct sp_worker *w)
{
    struct sp_worker_info *wi = metrics_worker(w->index);
    struct sp_pool_stats ps;
    size_t cached;

    if (wi == NULL)
        return;
    sp_pool_stats(w->host.pool, &ps);
    wi->pid = w->host.pid;
    wi->alive = 1;
    wi->generation = w->host.gen ? w->host.gen->number : 0;
    wi->loaded_at = w->host.gen ? w->host.gen->loaded_at : 0;
    wi->pool_total = ps.total;
    wi->pool_idle = ps.idle;
    wi->pool_busy = ps.busy;
    wi->pool_connecting = ps.connecting;
    wi->pool_queued = ps.queued;
    wi->lua_memory = w->host.gen ? w->host.gen->mem_used : 0;
    sp_jwt_cache_stats(w->host.jwt_cache, &wi->token_hits, &wi->token_misses, &cached);
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
    if (sp_gen_load(conf, w->index, sp_lua_openers, w->next_gen, out, err) != 0) {
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
    sp_timer_stop(w->host.gen);
    sp_gen_unref(w->host.gen); /* in-flight requests keep the old one alive */
    w->host.gen = gen;
    if (w->retry != NULL)
        event_del(w->retry);
    sp_timer_start(&w->host, gen);
}

static void reload(struct sp_worker *w)
{
    struct sp_gen *gen = NULL;
    sp_err err;

    sp_req_log_flush(&w->host, 0); /* the old generation's lines before the new one's */
    if (load_next(w, &gen, &err) != 0) {
        snprintf(w->last_reload_error, sizeof(w->last_reload_error), "%s", err.msg);
        if (w->host.gen != NULL)
            sp_log(SP_LOG_ERROR, "reload failed, generation %llu keeps serving: %s",
                   (unsigned long long)w->host.gen->number, err.msg);
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
    w->trimmed = 0; /* the old generation's memory, once it ends: the next quiet tick */
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
    if (w->host.gen != NULL || w->host.draining)
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
    if (w->host.draining)
        return;
    w->host.draining = 1;
    sp_req_log_flush(&w->host, 0);
    sp_timer_stop(w->host.gen);
    if (w->retry != NULL)
        event_del(w->retry);
    sp_log(SP_LOG_INFO, "draining: %d request(s) in flight", w->host.inflight);
    sp_http_drain(w->http);
    if (w->host.inflight == 0 && sp_http_connections(w->http) == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    tv.tv_sec = w->conf->shutdown_timeout_ms / 1000;
    tv.tv_usec = (w->conf->shutdown_timeout_ms % 1000) * 1000;
    w->drain_timer = evtimer_new(w->base, on_signal, w); /* fires as a second SIGTERM: exit */
    event_base_loopexit(w->base, &tv);
}

/* What a burst of requests or a reload freed goes back to the system once the worker has
 * been quiet a whole tick (1 s): glibc keeps freed memory for reuse, and only its heap's top
 * ever shrinks by itself; malloc_trim(0) also gives back the free pages inside the heap
 * (2 MB a worker after the benchmark's scenarios). Once per quiet spell, never under load. */
static void trim_when_quiet(struct sp_worker *w)
{
    if (w->host.reqseq != w->quiet_seq) {
        w->quiet_seq = w->host.reqseq;
        w->trimmed = 0;
        return;
    }
    if (w->trimmed || w->host.inflight > 0)
        return;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    w->trimmed = 1;
}

static void check_parent(evutil_socket_t fd, short what, void *arg)
{
    SP_UNUSED(fd);
    SP_UNUSED(what);
    publish(arg);
    trim_when_quiet(arg);
    if (getppid() == 1)
        on_signal(SIGTERM, 0, arg); /* the master is gone */
}

/* The last request of a draining worker has finished: its answer may still be on its way out,
 * so the loop ends when the connections have closed too (or at the shutdown timeout). */
static void on_idle(struct sp_host *host)
{
    struct sp_worker *w = (struct sp_worker *)host;

    if (sp_http_connections(w->http) == 0)
        event_base_loopexit(w->base, NULL);
}

static void http_drained(void *ctx)
{
    struct sp_worker *w = ctx;

    if (w->host.draining && w->host.inflight == 0)
        event_base_loopexit(w->base, NULL);
}

/* ---- change notifications: the answer cache and the scripts' copies ---------------------- */

/* A committed change of a table (the payload is its name) on any instance. */
static void on_change(void *arg, const char *payload)
{
    SP_UNUSED(arg);
    sp_cache_touch(payload, strlen(payload));
    metrics_cache_invalidation();
}

/* LISTEN is in effect again: whatever was announced meanwhile is lost, so forget it all. */
static void on_subscribed(void *arg)
{
    struct sp_worker *w = arg;

    sp_cache_flush_all();
    sp_cache_clear(w->host.cache);
    metrics_cache_invalidation();
}

static void on_listen_lost(void *arg)
{
    struct sp_worker *w = arg;

    sp_log(SP_LOG_WARN, "worker %d: change notifications lost; cache off until reconnected",
           w->index);
    sp_cache_clear(w->host.cache);
}

#define CHANGES_CHANNEL "spacer_changes" /* sql/migrations/0009_notify_changes.sql */

static int cache_start(struct sp_worker *w, sp_err *err)
{
    const struct sp_conf *conf = w->conf;
    struct sp_listen_conf lc = {conf->db_url,    CHANGES_CHANNEL, conf->connect_timeout_ms,
                                on_change,       on_subscribed,   on_listen_lost,
                                w};

    if (conf->cache_enabled &&
        (w->host.cache = sp_cache_new(conf->cache_max_entries, conf->cache_max_size,
                                      conf->cache_ttl_ms, err)) == NULL)
        return -1;
    return (w->host.listen = sp_listen_new(w->base, &lc, err)) == NULL ? -1 : 0;
}

int sp_worker_run(const struct sp_conf *conf, int index, int listen_fd, int ctl_fd,
                  const char *ctl_path)
{
    struct sp_worker w = {0};
    struct sp_pool_conf pc;
    struct timeval one_s = {1, 0};
    struct sp_http_limits lim = {
        .max_header = conf->max_header,
        .max_body = conf->max_body,
        .header_timeout_ms = conf->header_timeout_ms,
        .read_timeout_ms = conf->timeout_s * 1000,
        .keepalive_timeout_ms = conf->keepalive_timeout_ms,
        .keepalive_requests = conf->keepalive_requests,
        .max_idle = conf->max_idle_connections,
        .max_connections = conf->max_connections,
    };
    struct sp_http_cbs cbs = {http_request, http_cancel, http_refused, http_make_id,
                              http_drained};
    sigset_t hup;
    sp_err err;
    int rc = 1;

    w.conf = w.host.conf = conf;
    w.index = w.host.index = index;
    w.host.pid = getpid();
    w.host.ops = &w.ops;
    w.host.on_idle = on_idle;
    w.ops.reload = ops_reload;
    w.ops.ctx = &w;
    snprintf(w.ctl_path, sizeof(w.ctl_path), "%s", ctl_path ? ctl_path : "");
    w.ctl_fd = ctl_fd;
    w.next_gen = 1;
    RAND_bytes((unsigned char *)&w.host.id_salt, sizeof(w.host.id_salt));
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);

    /* Three priorities: every event has the middle one but the access log's idle flush,
     * the lowest, which runs only in a pass of the loop with nothing else to do. */
    if ((w.base = w.host.base = event_base_new()) == NULL ||
        event_base_priority_init(w.base, 3) != 0 || sp_req_log_start(&w.host) != 0) {
        sp_log(SP_LOG_ERROR, "worker %d: cannot create the event loop", index);
        goto done;
    }
    pc = (struct sp_pool_conf){conf->db_url, conf->pool_size, conf->queue_size,
                               conf->connect_timeout_ms, conf->statement_timeout_ms,
                               conf->pipeline_depth};
    if ((w.host.pool = sp_pool_new(w.base, &pc, &err)) == NULL) {
        sp_log(SP_LOG_ERROR, "worker %d: %s", index, err.msg);
        goto done;
    }
    if (cache_start(&w, &err) != 0) {
        sp_log(SP_LOG_ERROR, "worker %d: %s", index, err.msg);
        goto done;
    }
    if ((w.host.hasher = sp_hasher_new(w.base, conf->hash_threads, &err)) == NULL) {
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
    if (sp_gen_load(conf, index, sp_lua_openers, w.next_gen++, &w.host.gen, &err) != 0) {
        struct timeval first = {1, 0};
        w.host.gen = NULL;
        w.retry_s = 1;
        sp_log(SP_LOG_ERROR, "worker %d: scripts failed to load (answering 503 "
               "scripts_unavailable; next try in 1 s): %s", index, err.msg);
        evtimer_add(w.retry, &first);
    }
    if (sp_httpc_start(&w.host, &err) != 0) /* calls will try again, and say why */
        sp_log(SP_LOG_ERROR, "worker %d: outbound HTTP unavailable: %s", index, err.msg);
    if ((w.http = sp_http_new(w.base, listen_fd, &lim, &cbs, &w, &err)) == NULL ||
        sp_http_balance(w.http, metrics_conns(), metrics_nworkers(), index) != 0) {
        sp_log(SP_LOG_ERROR, "worker %d: cannot listen: %s", index,
               w.http ? "out of memory" : err.msg);
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
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &hup, NULL); /* a reload asked for during the start runs now */
    publish(&w);
    if (w.host.gen != NULL) {
        sp_log(SP_LOG_INFO, "worker %d serving, generation %llu (%d routes, %.1f ms to load)",
               index, (unsigned long long)w.host.gen->number, sp_router_count(w.host.gen->router),
               w.host.gen->load_us / 1000.0);
        sp_timer_start(&w.host, w.host.gen);
    }
    event_base_dispatch(w.base);
    if (w.host.inflight > 0)
        sp_log(SP_LOG_WARN, "worker %d: shutdown timeout with %d request(s) in flight", index,
               w.host.inflight);
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
    sp_http_free(w.http); /* cancels what is still in flight */
    sp_req_log_flush(&w.host, 1);
    sp_log_buffer_free(); /* the last lines, then the buffer */
    if (w.host.inflight == 0) {
        sp_hasher_free(w.host.hasher);
        sp_jwt_cache_free(w.host.jwt_cache);
        sp_listen_free(w.host.listen);
        sp_cache_free(w.host.cache);
        sp_pool_free(w.host.pool);
        sp_gen_unref(w.host.gen);
        sp_httpc_free(w.host.httpc);
        if (w.base)
            event_base_free(w.base);
    }
    return rc;
}
