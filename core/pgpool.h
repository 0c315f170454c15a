/* pgpool.h: the worker's PostgreSQL connections, driven by its libevent loop.
 * Knows libpq and libevent, never Lua or a table name. Nothing here ever blocks. */
#ifndef SP_PGPOOL_H
#define SP_PGPOOL_H

#include <libpq-fe.h>

#include "sp.h"

struct event_base;
struct sp_pool;
struct sp_pgconn;

struct sp_pool_conf {
    const char *conninfo;   /* libpq connection string or URI */
    int size;               /* connections kept open (>= 1) */
    int queue_max;          /* requests that may wait for a connection; beyond: SP_PG_BUSY */
    int connect_timeout_ms; /* one connect attempt (it goes on in the background) */
    int query_timeout_ms;   /* per statement (0: none): the server's statement_timeout (an
                             * SP_PG_ERROR 57014), and 500 ms later a client guard that closes
                             * the connection (SP_PG_UNAVAILABLE "query timed out") */
    int pipeline_depth;     /* statements one connection may have in flight (0 or 1: one): when
                             * no connection is idle, a query goes behind others on the least
                             * loaded one rather than wait */
};

/* Why an operation failed; what the HTTP edge makes of it is its business. */
enum sp_pg_status {
    SP_PG_OK = 0,
    SP_PG_ERROR,       /* the server rejected the statement: see sqlstate and friends */
    SP_PG_UNAVAILABLE, /* no connection could be had in time, or it was lost mid-query (503) */
    SP_PG_BUSY,        /* the wait queue is full (503 with Retry-After) */
};

struct sp_pg_result {
    enum sp_pg_status status;
    PGresult *res;          /* SP_PG_OK: the result (owned by the pool, valid during the callback) */
    const char *sqlstate;   /* SP_PG_ERROR: five characters */
    const char *message;    /* every failure: one line */
    const char *constraint; /* SP_PG_ERROR: may be NULL */
    const char *detail;     /* SP_PG_ERROR: may be NULL */
};

/* Called once per query, from the loop (or sp_pool_free()), never from inside the call that
 * queued it; it may at once query, acquire or release again. */
typedef void (*sp_pg_query_cb)(void *arg, const struct sp_pg_result *r);
/* Called once per acquire; conn is NULL when r->status != SP_PG_OK. */
typedef void (*sp_pg_conn_cb)(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r);

/* On success the pool is the caller's, to free with sp_pool_free(); connecting starts at once.
 * conninfo is parsed here (a malformed one fails here); the pool adds
 * fallback_application_name=spacer. libpq resolves a host name with getaddrinfo(), which blocks:
 * give an address (hostaddr) or a socket directory. Lost connections reconnect by themselves
 * after 100 ms, failed connects after 100 ms doubling up to 5 s; while requests wait and no
 * connection is up, one connect skips its backoff (at most every 100 ms).
 * While no connection is up a request waits 500 ms at most (connect_timeout_ms if shorter);
 * while the database is known unreachable (the latest connect failed) it is answered
 * SP_PG_UNAVAILABLE at once, unless a connect started less than that ago may still succeed. */
struct sp_pool *sp_pool_new(struct event_base *base, const struct sp_pool_conf *conf, sp_err *err);
/* NULL is fine. Callbacks still owed run synchronously in here, with SP_PG_UNAVAILABLE "database
 * pool closed" (or the SP_PG_BUSY already decided); pool calls made from them return -1. Pinned
 * connections die with the pool. Not to be called from inside one of the pool's callbacks. */
void sp_pool_free(struct sp_pool *pool);

/* One statement on any free connection. values are text-format parameters ($1..$n; NULL is SQL
 * NULL); results are text too. The pool copies sql and values. Each SQL text is prepared once per
 * connection and reused (up to 256 per connection; beyond, run unprepared).
 * Returns 0 when cb will run, once, from the loop, with one of:
 *   SP_PG_OK, SP_PG_ERROR;
 *   SP_PG_BUSY when queue_max requests already wait for a connection;
 *   SP_PG_UNAVAILABLE when no connection is up ("database unavailable: <libpq's reason>", at
 *   once or after the short wait above), the connection was lost mid-statement or the client
 *   guard fired.
 * Returns -1, and cb will not run, only for misuse (sql or cb NULL, nparams outside 0..65535,
 * values NULL with nparams > 0), a pool being freed, or out of memory. */
int sp_pool_query(struct sp_pool *pool, const char *sql, int nparams, const char *const *values,
                  sp_pg_query_cb cb, void *arg);

/* Pin a connection (for a transaction). cb receives it; give it back with sp_pool_release().
 * Waits in the same queue as queries, with the same 0/-1 contract and answers. */
int sp_pool_acquire(struct sp_pool *pool, sp_pg_conn_cb cb, void *arg);
/* A statement on a pinned connection. Same contract as sp_pool_query(); statements wait for each
 * other in order. If the connection is lost, its statement and every later one gets
 * SP_PG_UNAVAILABLE until it is released (the transaction is gone; the pool never reconnects
 * under a pin). Also -1 when conn is not pinned or was already released. */
int sp_pool_query_on(struct sp_pgconn *conn, const char *sql, int nparams,
                     const char *const *values, sp_pg_query_cb cb, void *arg);
/* Give a pinned connection back; conn is not the caller's any more. Statements already queued on
 * it still run and call back. If it is still inside a transaction (the script died), the pool
 * rolls it back before anyone else gets it; a broken one is closed and reconnected. */
void sp_pool_release(struct sp_pgconn *conn);

/* Drops the queries and acquires of arg still waiting for a connection: their callbacks will
 * never run. Returns how many. A statement already on a connection still calls back. */
int sp_pool_cancel(struct sp_pool *pool, void *arg);

struct sp_pool_stats {
    int total, idle, busy, connecting; /* connections by state (busy: running or pinned);
                                        * total - the others: down, waiting to reconnect */
    int queued;                        /* requests waiting for one */
    int inflight;                      /* statements sent and not yet answered */
};
void sp_pool_stats(const struct sp_pool *pool, struct sp_pool_stats *out);

#endif
