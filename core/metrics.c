/* metrics.c: lock-free shared counters. Series live in a fixed open-addressed table; a slot
 * is claimed once with a compare-and-swap and never freed (routes are few). */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define SLOTS    1024
#define KEY_LEN  160
#define NBUCKETS 12

static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

struct slot {
    atomic_int state; /* 0 free, 1 being written, 2 ready */
    uint32_t hash;
    char route[KEY_LEN];
    char method[8];
    int status;
    atomic_ullong count;
    atomic_ullong sum_us;
    atomic_ullong buckets[NBUCKETS]; /* cumulative on render, not here */
};

struct shared {
    int nworkers;
    atomic_ullong script_errors;
    atomic_ullong reloads_ok, reloads_failed, restarts;
    atomic_ullong http_calls[SP_HTTP_NOUTCOMES];
    atomic_ullong timer_ok, timer_failed, timer_skipped;
    atomic_ullong cache_hits, cache_misses, cache_invalidations;
    struct sp_worker_info workers[SP_MAX_WORKERS];
    int conns[SP_MAX_WORKERS]; /* each worker's open connections; -1: not accepting */
    struct slot slots[SLOTS];
};

static struct shared *sh;

int metrics_init(int nworkers, sp_err *err)
{
    void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        sp_err_set(err, "cannot map shared metrics");
        return -1;
    }
    sh = p;
    sh->nworkers = nworkers < SP_MAX_WORKERS ? nworkers : SP_MAX_WORKERS;
    for (int i = 0; i < SP_MAX_WORKERS; i++)
        sh->conns[i] = -1;
    return 0;
}

int *metrics_conns(void)
{
    return sh ? sh->conns : NULL;
}

struct sp_worker_info *metrics_worker(int index)
{
    if (sh == NULL || index < 0 || index >= sh->nworkers)
        return NULL;
    return &sh->workers[index];
}

int metrics_nworkers(void)
{
    return sh ? sh->nworkers : 0;
}

static uint32_t fnv(const char *a, const char *b, int status)
{
    uint32_t h = 2166136261u;

    for (; *a; a++)
        h = (h ^ (uint8_t)*a) * 16777619u;
    for (; *b; b++)
        h = (h ^ (uint8_t)*b) * 16777619u;
    return (h ^ (uint32_t)status) * 16777619u;
}

static struct slot *find_slot(const char *route, const char *method, int status)
{
    uint32_t h = fnv(route, method, status);

    for (uint32_t i = 0; i < SLOTS; i++) {
        struct slot *s = &sh->slots[(h + i) % SLOTS];
        int st = atomic_load(&s->state);
        if (st == 0) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&s->state, &expected, 1)) {
                s->hash = h;
                snprintf(s->route, sizeof(s->route), "%s", route);
                snprintf(s->method, sizeof(s->method), "%s", method);
                s->status = status;
                atomic_store(&s->state, 2);
                return s;
            }
            st = atomic_load(&s->state);
        }
        while (st == 1)
            st = atomic_load(&s->state); /* another process is writing its key: a moment */
        if (s->hash == h && s->status == status && strcmp(s->method, method) == 0 &&
            strcmp(s->route, route) == 0)
            return s;
    }
    return NULL; /* full: the series is dropped, counting never blocks a request */
}

void metrics_observe(const char *route, const char *method, int status, uint64_t dur_us)
{
    struct slot *s;
    double secs = (double)dur_us / 1e6;

    if (sh == NULL || (s = find_slot(route, method, status)) == NULL)
        return;
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, dur_us, memory_order_relaxed);
    for (int i = 0; i < NBUCKETS; i++)
        if (secs <= bucket_le[i]) {
            atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
            break;
        }
}

void metrics_cache_hit(void)
{
    if (sh != NULL)
        atomic_fetch_add_explicit(&sh->cache_hits, 1, memory_order_relaxed);
}

void metrics_cache_miss(void)
{
    if (sh != NULL)
        atomic_fetch_add_explicit(&sh->cache_misses, 1, memory_order_relaxed);
}

void metrics_cache_invalidation(void)
{
    if (sh != NULL)
        atomic_fetch_add_explicit(&sh->cache_invalidations, 1, memory_order_relaxed);
}

void metrics_script_error(void)
{
    if (sh)
        atomic_fetch_add(&sh->script_errors, 1);
}

void metrics_reload(int ok)
{
    if (sh)
        atomic_fetch_add(ok ? &sh->reloads_ok : &sh->reloads_failed, 1);
}

void metrics_restart(void)
{
    if (sh)
        atomic_fetch_add(&sh->restarts, 1);
}

void metrics_http_call(enum sp_http_outcome outcome)
{
    if (sh && outcome >= 0 && outcome < SP_HTTP_NOUTCOMES)
        atomic_fetch_add(&sh->http_calls[outcome], 1);
}

void metrics_timer_run(int ok)
{
    if (sh)
        atomic_fetch_add(ok ? &sh->timer_ok : &sh->timer_failed, 1);
}

void metrics_timer_skip(void)
{
    if (sh)
        atomic_fetch_add(&sh->timer_skipped, 1);
}

/* The outbound calls and the timer runs. */
static void render_background(struct sp_buf *out)
{
    static const char *const outcomes[SP_HTTP_NOUTCOMES] = {
        "ok", "timeout", "connection_refused", "tls", "dns", "too_large", "error",
    };

    sp_buf_adds(out, "# HELP spacer_http_client_calls_total Outbound calls of scripts "
                     "(spacer.http) by outcome; ok is any HTTP status.\n"
                     "# TYPE spacer_http_client_calls_total counter\n");
    for (int i = 0; i < SP_HTTP_NOUTCOMES; i++)
        sp_buf_printf(out, "spacer_http_client_calls_total{outcome=\"%s\"} %llu\n", outcomes[i],
                      (unsigned long long)atomic_load(&sh->http_calls[i]));
    sp_buf_printf(out,
                  "# HELP spacer_timer_runs_total Background timer runs by result; skipped: the "
                  "previous run still going.\n"
                  "# TYPE spacer_timer_runs_total counter\n"
                  "spacer_timer_runs_total{result=\"ok\"} %llu\n"
                  "spacer_timer_runs_total{result=\"error\"} %llu\n"
                  "spacer_timer_runs_total{result=\"skipped\"} %llu\n",
                  (unsigned long long)atomic_load(&sh->timer_ok),
                  (unsigned long long)atomic_load(&sh->timer_failed),
                  (unsigned long long)atomic_load(&sh->timer_skipped));
}

static void label_escape(struct sp_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sp_buf_addc(out, '\\');
        sp_buf_addc(out, *s == '\n' ? ' ' : *s);
    }
}

void metrics_render(struct sp_buf *out)
{
    if (sh == NULL)
        return;
    sp_buf_adds(out, "# HELP spacer_http_requests_total HTTP requests by route and status.\n"
                     "# TYPE spacer_http_requests_total counter\n");
    for (int i = 0; i < SLOTS; i++) {
        struct slot *s = &sh->slots[i];
        if (atomic_load(&s->state) != 2)
            continue;
        sp_buf_adds(out, "spacer_http_requests_total{method=\"");
        label_escape(out, s->method);
        sp_buf_adds(out, "\",route=\"");
        label_escape(out, s->route);
        sp_buf_printf(out, "\",status=\"%d\"} %llu\n", s->status,
                      (unsigned long long)atomic_load(&s->count));
    }
    sp_buf_adds(out, "# HELP spacer_http_request_duration_seconds Request latency by route.\n"
                     "# TYPE spacer_http_request_duration_seconds histogram\n");
    /* One histogram per route: add up its slots (methods and statuses). */
    for (int i = 0; i < SLOTS; i++) {
        struct slot *s = &sh->slots[i];
        unsigned long long b[NBUCKETS] = {0}, count = 0, sum = 0;
        int first = 1;
        if (atomic_load(&s->state) != 2)
            continue;
        for (int j = 0; j < SLOTS; j++) {
            struct slot *t = &sh->slots[j];
            if (atomic_load(&t->state) != 2 || strcmp(t->route, s->route) != 0)
                continue;
            if (j < i) {
                first = 0; /* rendered with an earlier slot */
                break;
            }
            count += atomic_load(&t->count);
            sum += atomic_load(&t->sum_us);
            for (int k = 0; k < NBUCKETS; k++)
                b[k] += atomic_load(&t->buckets[k]);
        }
        if (!first)
            continue;
        unsigned long long cum = 0;
        for (int k = 0; k < NBUCKETS; k++) {
            cum += b[k];
            sp_buf_adds(out, "spacer_http_request_duration_seconds_bucket{route=\"");
            label_escape(out, s->route);
            sp_buf_printf(out, "\",le=\"%g\"} %llu\n", bucket_le[k], cum);
        }
        sp_buf_adds(out, "spacer_http_request_duration_seconds_bucket{route=\"");
        label_escape(out, s->route);
        sp_buf_printf(out, "\",le=\"+Inf\"} %llu\n", count);
        sp_buf_adds(out, "spacer_http_request_duration_seconds_sum{route=\"");
        label_escape(out, s->route);
        sp_buf_printf(out, "\"} %.6f\n", (double)sum / 1e6);
        sp_buf_adds(out, "spacer_http_request_duration_seconds_count{route=\"");
        label_escape(out, s->route);
        sp_buf_printf(out, "\"} %llu\n", count);
    }
    int total = 0, idle = 0, busy = 0, connecting = 0, queued = 0;
    uint64_t gen = 0, token_hits = 0, token_misses = 0;
    for (int i = 0; i < sh->nworkers; i++) {
        struct sp_worker_info *w = &sh->workers[i];
        if (!w->alive)
            continue;
        total += w->pool_total, idle += w->pool_idle, busy += w->pool_busy;
        connecting += w->pool_connecting, queued += w->pool_queued;
        if (w->generation > gen)
            gen = w->generation;
        token_hits += w->token_hits, token_misses += w->token_misses;
    }
    sp_buf_printf(out,
                  "# HELP spacer_db_pool_connections PostgreSQL connections by state.\n"
                  "# TYPE spacer_db_pool_connections gauge\n"
                  "spacer_db_pool_connections{state=\"idle\"} %d\n"
                  "spacer_db_pool_connections{state=\"busy\"} %d\n"
                  "spacer_db_pool_connections{state=\"connecting\"} %d\n"
                  "# HELP spacer_db_queue_length Requests waiting for a connection.\n"
                  "# TYPE spacer_db_queue_length gauge\n"
                  "spacer_db_queue_length %d\n"
                  "# HELP spacer_script_errors_total Script errors and limit aborts.\n"
                  "# TYPE spacer_script_errors_total counter\n"
                  "spacer_script_errors_total %llu\n"
                  "# HELP spacer_reloads_total Script reloads by result (per worker).\n"
                  "# TYPE spacer_reloads_total counter\n"
                  "spacer_reloads_total{result=\"ok\"} %llu\n"
                  "spacer_reloads_total{result=\"failed\"} %llu\n"
                  "# HELP spacer_generation The newest script generation serving.\n"
                  "# TYPE spacer_generation gauge\n"
                  "spacer_generation %llu\n"
                  "# HELP spacer_worker_restarts_total Workers restarted after a crash.\n"
                  "# TYPE spacer_worker_restarts_total counter\n"
                  "spacer_worker_restarts_total %llu\n"
                  "# HELP spacer_cache_hits_total Cacheable requests answered from the cache.\n"
                  "# TYPE spacer_cache_hits_total counter\n"
                  "spacer_cache_hits_total %llu\n"
                  "# HELP spacer_cache_misses_total Cacheable requests that ran their handler.\n"
                  "# TYPE spacer_cache_misses_total counter\n"
                  "spacer_cache_misses_total %llu\n"
                  "# HELP spacer_cache_invalidations_total Change notifications and flushes "
                  "received (per worker).\n"
                  "# TYPE spacer_cache_invalidations_total counter\n"
                  "spacer_cache_invalidations_total %llu\n"
                  "# HELP spacer_token_cache_hits_total Bearer tokens found in a worker's cache of "
                  "verified tokens (live workers, published each second).\n"
                  "# TYPE spacer_token_cache_hits_total counter\n"
                  "spacer_token_cache_hits_total %llu\n"
                  "# HELP spacer_token_cache_misses_total Bearer tokens verified in full (kept when "
                  "valid; live workers, published each second).\n"
                  "# TYPE spacer_token_cache_misses_total counter\n"
                  "spacer_token_cache_misses_total %llu\n",
                  idle, busy, connecting, queued,
                  (unsigned long long)atomic_load(&sh->script_errors),
                  (unsigned long long)atomic_load(&sh->reloads_ok),
                  (unsigned long long)atomic_load(&sh->reloads_failed), (unsigned long long)gen,
                  (unsigned long long)atomic_load(&sh->restarts),
                  (unsigned long long)atomic_load(&sh->cache_hits),
                  (unsigned long long)atomic_load(&sh->cache_misses),
                  (unsigned long long)atomic_load(&sh->cache_invalidations),
                  (unsigned long long)token_hits, (unsigned long long)token_misses);
    render_background(out);
    SP_UNUSED(total);
}
