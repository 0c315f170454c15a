/* metrics.h: counters shared by the master and every worker (one anonymous shared mapping made
 * before the fork), rendered as Prometheus text by whichever worker is asked. Also each
 * worker's state (generation, reload outcome, pool) for the admin status. */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sp.h"

#define SP_MAX_WORKERS 64

struct sp_worker_info {
    pid_t pid;
    int alive;
    uint64_t generation;
    time_t loaded_at;
    uint64_t reload_seq;     /* bumped after every reload attempt */
    int reload_ok;           /* outcome of the last attempt */
    char last_error[480];    /* of the last failed attempt, "" after a success */
    int pool_total, pool_idle, pool_busy, pool_connecting, pool_queued;
    size_t lua_memory;
    uint64_t token_hits, token_misses; /* the worker's cache of verified tokens, since start */
};

/* Creates the shared region (master, before forking). 0 or -1. */
int metrics_init(int nworkers, sp_err *err);
struct sp_worker_info *metrics_worker(int index); /* NULL when out of range or not set up */
int metrics_nworkers(void);
/* Each worker's open connections (metrics_nworkers() of them), for sp_http_balance(); -1 for a
 * worker that does not accept (not started, gone, draining). NULL when not set up. */
int *metrics_conns(void);

void metrics_observe(const char *route, const char *method, int status, uint64_t dur_us);
void metrics_script_error(void);
void metrics_reload(int ok);
void metrics_restart(void);
void metrics_cache_hit(void);
void metrics_cache_miss(void);
void metrics_cache_invalidation(void);

/* Outbound calls of spacer.http by outcome (the first word of the script's error). */
enum sp_http_outcome {
    SP_HTTP_OK,
    SP_HTTP_TIMEOUT,
    SP_HTTP_REFUSED,
    SP_HTTP_TLS,
    SP_HTTP_DNS,
    SP_HTTP_TOO_LARGE,
    SP_HTTP_ERROR,
    SP_HTTP_NOUTCOMES
};
void metrics_http_call(enum sp_http_outcome outcome);
/* Timer runs: ended ok, ended with an error or a limit, or skipped (the previous still ran). */
void metrics_timer_run(int ok);
void metrics_timer_skip(void);

/* Appends the Prometheus exposition. */
void metrics_render(struct sp_buf *out);

#endif
