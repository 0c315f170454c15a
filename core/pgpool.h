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
    int connect_timeout_ms; /* a connect, and a wait for one while the database is down */
    int query_timeout_ms;   /* client side guard per statement (0: none) */
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

/* Called once per query, from the loop, never from inside sp_pool_query() itself. */
typedef void (*sp_pg_query_cb)(void *arg, const struct sp_pg_result *r);
/* Called once per acquire; conn is NULL when r->status != SP_PG_OK. */
typedef void (*sp_pg_conn_cb)(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r);

/* On success the pool is the caller's, to free with sp_pool_free(); connecting starts at once. */
struct sp_pool *sp_pool_new(struct event_base *base, const struct sp_pool_conf *conf, sp_err *err);
void sp_pool_free(struct sp_pool *pool); /* NULL is fine; fails queued work with SP_PG_UNAVAILABLE */

/* One statement on any free connection. values are text-format parameters ($1..$n; NULL is SQL
 * NULL); the pool copies sql and values. Each SQL text is prepared once per connection and
 * reused. Returns 0 when queued (cb will run), -1 when the caller must not wait (err says). */
int sp_pool_query(struct sp_pool *pool, const char *sql, int nparams, const char *const *values,
                  sp_pg_query_cb cb, void *arg);

/* Pin a connection (for a transaction). cb receives it; give it back with sp_pool_release(). */
int sp_pool_acquire(struct sp_pool *pool, sp_pg_conn_cb cb, void *arg);
/* A statement on a pinned connection. Same contract as sp_pool_query(). */
int sp_pool_query_on(struct sp_pgconn *conn, const char *sql, int nparams,
                     const char *const *values, sp_pg_query_cb cb, void *arg);
/* Give a pinned connection back. If it is still inside a transaction (the script died), the pool
 * rolls it back before anyone else gets it; a broken one is closed and reconnected. */
void sp_pool_release(struct sp_pgconn *conn);

struct sp_pool_stats {
    int total, idle, busy, connecting; /* connections by state */
    int queued;                        /* requests waiting for one */
};
void sp_pool_stats(const struct sp_pool *pool, struct sp_pool_stats *out);

#endif
