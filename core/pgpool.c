/* pgpool.c: the worker's PostgreSQL connections: connect, lend, check, close.
 * Knows libpq and libevent, never Lua or a table name.
 *
 * Each slot (struct sp_pgconn) is a small state machine driven by events on PQsocket():
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> READY <--statements--> BUSY
 * and back to DOWN when it fails or is lost (then a timer reconnects it with backoff).
 * Requests wait in one FIFO (queries and acquires together) and pool_dispatch() hands them to
 * READY connections. The public functions only queue work and activate pool->kick, so every
 * callback runs from the loop; the loop's callbacks (kick, timers, sockets) end in
 * pool_dispatch(), which is the one place work moves on.
 *
 * Every connection runs in libpq's pipeline mode: a request goes out as its messages and its
 * own Sync (Prepare, Execute, Sync the first time a connection sees its SQL; Execute, Sync
 * after), so a failing statement aborts nothing but itself. With pipeline_depth > 1 a plain
 * query goes behind statements in flight that are known to be quick and expected done within
 * PG_SHORT_US (pool_short_conn(): the pool keeps each SQL text's typical time), else to an idle
 * connection, else behind those in flight on the least loaded unpinned connection whose
 * statement in progress has not stalled and where none is known to be long (up to that
 * depth): one backend wake-up and one read then serve several.
 * Statements known to be long (typical time above PG_SHORT_US) run on half the connections at
 * most (pool_long_room()); one that would pass that waits, and the requests behind it in the
 * queue may go first.
 * Results come back in order; c->inflight is that order. Acquires (transactions) and a
 * statement that opens a transaction (BEGIN, START) only ever get a connection with nothing in
 * flight, and nothing is sent behind them. */
#include "pgpool.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define PG_BACKOFF_MIN_MS 100  /* first wait after a failed connect, and after a loss */
#define PG_BACKOFF_MAX_MS 5000 /* doubling stops here */
#define PG_GUARD_SLACK_MS 500  /* the client guard gives the server's statement_timeout the lead */
#define PG_DOWN_WAIT_MS   500  /* while no connection is up, the longest a request waits for one */
#define PG_STMT_MAX       256  /* prepared statements per connection; beyond, run unnamed */
#define PG_STALL_MIN_US   2000 /* a head running this long (or 4 typical statements) is stalled */
#define PG_SHORT_US       1000 /* work in flight expected to end within this: queue behind it */
#define PG_COSTS          256  /* SQL texts whose typical time the pool remembers (a hash table) */
#define PG_PARAMS_MAX     65535
#define PG_APP_NAME       "spacer"

enum pgreq_kind {
    PGREQ_QUERY,
    PGREQ_ACQUIRE,
    PGREQ_RESET, /* the pool's own ROLLBACK, embedded in its connection */
};

enum pgreq_step {
    PGREQ_EXECUTE, /* the statement itself is on the wire */
    PGREQ_PREPARE, /* its Parse is too, ahead of it: the first result is the Parse's */
};

/* A query or an acquire, waiting or running. One malloc holds it, its values and its sql; it is
 * freed by req_answer() once its callback has run. */
struct pgreq {
    struct pgreq *next;
    enum pgreq_kind kind;
    enum pgreq_step step;
    int nres;  /* results received so far (on a connection) */
    int solo;  /* opens a transaction: an idle connection, nothing sent behind it */
    uint64_t queued_us;
    sp_pg_query_cb query_cb;
    sp_pg_conn_cb conn_cb;
    void *arg;
    enum sp_pg_status verdict; /* on pool->verdicts: the answer due */
    const char *verdict_msg;   /* a constant */
    uint64_t hash;             /* of sql, for the statement cache and its cost */
    uint32_t expect_us;        /* its sql's typical time when sent; 0: not known yet */
    const char *sql;
    int nparams;
    const char *const *values;
};

struct pgq {
    struct pgreq *head, *tail;
    int len;
};

/* A statement prepared on one connection; sql is the connection's copy. */
struct pgstmt {
    uint64_t hash;
    char *sql;
    char name[16];
    int pending; /* its Parse is in flight: others with the same SQL run unnamed meanwhile */
};

enum conn_state {
    CONN_DOWN,       /* no PGconn; timer: the reconnect (not armed while pinned) */
    CONN_CONNECTING, /* PQconnectPoll() in progress; timer: connect_timeout_ms */
    CONN_READY,      /* connected, no statement; io: EV_READ to notice a loss */
    CONN_BUSY,       /* inflight is on the wire; timer: the query guard of its head */
};

struct sp_pgconn {
    struct sp_pool *pool;
    PGconn *pg; /* ours, NULL when DOWN */
    enum conn_state state;
    struct event *io; /* on PQsocket(pg); NULL when not watching */
    short io_what;
    struct event *timer;
    int backoff_ms; /* the wait after the next failed connect */
    int flushing;   /* PQflush() has more to send */
    uint64_t head_us; /* when the head of inflight started: its send from idle, or the answer
                       * before it */
    int pinned;     /* lent by sp_pool_acquire() (lost while pinned: stays DOWN until returned) */
    int returning;  /* sp_pool_release() was called: give back once pinned_q is empty */
    struct pgq inflight; /* the statements sent, in the order their results come */
    PGresult *res;       /* the head's result so far, ours */
    struct pgq pinned_q; /* sp_pool_query_on() work waiting its turn */
    struct pgreq reset;  /* the ROLLBACK before this connection goes back to the pool */
    struct pgstmt *stmts;
    int nstmts, capstmts, stmt_seq;
};

struct sp_pool {
    struct event_base *base;
    struct sp_pool_conf conf; /* conninfo is not kept: see kw, vals */
    char **kw, **vals;        /* PQconnectStartParams() arrays, NULL-terminated, ours */
    struct sp_pgconn *conns;  /* conf.size of them */
    struct pgq waiting;       /* queries and acquires waiting for a connection */
    struct pgq verdicts;      /* requests answered without a connection (SP_PG_BUSY) */
    struct event *kick;       /* runs pool_dispatch() from the loop */
    struct event *wait_timer; /* fails waiting requests once the database is down too long */
    uint64_t down_since_us;   /* since when no connection is up; 0 while one is */
    uint64_t kicked_us;       /* last connect started early for a waiting request */
    uint64_t connect_us;      /* when the latest connect attempt started */
    int unreachable;          /* the latest connect failed and none is up: fail fast */
    uint64_t stmt_us;         /* running mean of how long a statement stays the head */
    struct pgcost {           /* the same, per SQL text (by hash; a collision shares one) */
        uint64_t hash;
        uint32_t mean_us;
    } costs[PG_COSTS];
    int closing;
    char last_error[256]; /* "database unavailable: ...", the answer while down */
};

static void pool_dispatch(struct sp_pool *pool);
static void pool_watch_down(struct sp_pool *pool);
static void pool_enqueue(struct sp_pool *pool, struct pgreq *req);
static struct sp_pgconn *pool_free_conn(struct sp_pool *pool);
static struct sp_pgconn *pool_pipe_conn(struct sp_pool *pool);
static struct sp_pgconn *pool_short_conn(struct sp_pool *pool);
static struct pgcost *pool_cost(struct sp_pool *pool, uint64_t hash);
static int pool_count_free(const struct sp_pool *pool);
static int pool_known_long(struct sp_pool *pool, const struct pgreq *req);
static int pool_long_room(const struct sp_pool *pool);
static int pool_params(struct sp_pool *pool, const char *conninfo, sp_err *err);
static void pool_kick(struct sp_pool *pool);
static void pool_kick_cb(evutil_socket_t fd, short what, void *arg);
static void pool_wait_cb(evutil_socket_t fd, short what, void *arg);
static void pool_counts(const struct sp_pool *pool, int *up, int *connecting);
static uint64_t pool_deadline(const struct sp_pool *pool, const struct pgreq *req, int connecting);
static void conn_connect(struct sp_pgconn *c);
static void conn_connect_step(struct sp_pgconn *c);
static void conn_connect_failed(struct sp_pgconn *c, const char *why);
static void conn_ready(struct sp_pgconn *c);
static void conn_settle(struct sp_pgconn *c);
static void conn_start(struct sp_pgconn *c, struct pgreq *req);
static int conn_flush(struct sp_pgconn *c);
static void conn_busy_io(struct sp_pgconn *c, short what);
static void conn_read(struct sp_pgconn *c);
static void conn_keep(struct sp_pgconn *c, PGresult *res);
static int conn_done(struct sp_pgconn *c);
static void conn_guard(struct sp_pgconn *c);
static void conn_timed(struct sp_pgconn *c, const struct pgreq *req);
static int conn_check(struct sp_pgconn *c);
static void conn_lost(struct sp_pgconn *c, const char *msg);
static void conn_lost_pg(struct sp_pgconn *c);
static void conn_close(struct sp_pgconn *c);
static int conn_watch(struct sp_pgconn *c, short what);
static void conn_unwatch(struct sp_pgconn *c);
static void conn_arm(struct sp_pgconn *c, long ms);
static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static struct pgstmt *stmt_find(const struct sp_pgconn *c, const struct pgreq *req);
static void stmt_add(struct sp_pgconn *c, const struct pgreq *req, const char *name);
static void stmt_forget(struct sp_pgconn *c, const struct pgreq *req);
static void stmts_clear(struct sp_pgconn *c);
static struct pgreq *
req_new(enum pgreq_kind kind, const char *sql, int nparams, const char *const *values);
static int req_args_ok(const char *sql, int nparams, const char *const *values);
static void req_answer(struct pgreq *req, const struct sp_pg_result *r);
static void req_fail(struct pgreq *req, enum sp_pg_status status, const char *msg);
static void q_push(struct pgq *q, struct pgreq *req);
static struct pgreq *q_pop(struct pgq *q);
static void q_unlink(struct pgq *q, struct pgreq *prev, struct pgreq *req);
static void q_append(struct pgq *to, struct pgq *from);
static int res_fatal(const PGresult *res);
static void pg_line(char *buf, size_t cap, const char *prefix, const char *msg);
static void pg_notice_ignore(void *arg, const char *message);
static uint64_t sql_hash(const char *s, size_t len);
static int sql_opens_transaction(const char *sql);
static int word_is(const char *p, const char *w);
static struct timeval ms_tv(uint64_t ms);

/* ---- the public face ---------------------------------------------------------------------- */

/* On success the pool is the caller's, to free with sp_pool_free(). */
struct sp_pool *sp_pool_new(struct event_base *base, const struct sp_pool_conf *conf, sp_err *err)
{
    struct sp_pool *pool = NULL, *out = NULL;
    int i;

    if (base == NULL || conf == NULL || conf->conninfo == NULL) {
        sp_err_set(err, "database pool: no event base or no conninfo");
        goto done;
    }
    if (conf->size < 1 || conf->queue_max < 0 || conf->connect_timeout_ms < 1 ||
        conf->query_timeout_ms < 0) {
        sp_err_set(err, "database pool: size and connect timeout must be positive, queue and "
                        "query timeout not negative");
        goto done;
    }
    if ((pool = calloc(1, sizeof(*pool))) == NULL)
        goto oom;
    pool->base = base;
    pool->conf = *conf;
    pool->conf.conninfo = NULL; /* the caller's; kw and vals are our copy */
    if (pool->conf.pipeline_depth < 1)
        pool->conf.pipeline_depth = 1; /* 0: not given, off */
    if (pool_params(pool, conf->conninfo, err) != 0)
        goto done;
    pool->conns = calloc((size_t)conf->size, sizeof(*pool->conns));
    pool->kick = event_new(base, -1, 0, pool_kick_cb, pool);
    pool->wait_timer = evtimer_new(base, pool_wait_cb, pool);
    if (pool->conns == NULL || pool->kick == NULL || pool->wait_timer == NULL)
        goto oom;
    for (i = 0; i < conf->size; i++) {
        struct sp_pgconn *c = &pool->conns[i];

        c->pool = pool;
        c->reset.kind = PGREQ_RESET;
        c->reset.sql = "ROLLBACK";
        if ((c->timer = evtimer_new(base, conn_timer_cb, c)) == NULL)
            goto oom;
    }
    snprintf(pool->last_error, sizeof(pool->last_error),
             "database unavailable: no connection within %d ms",
             conf->connect_timeout_ms < PG_DOWN_WAIT_MS ? conf->connect_timeout_ms
                                                        : PG_DOWN_WAIT_MS);
    pool->down_since_us = sp_now_us();
    for (i = 0; i < conf->size; i++)
        conn_connect(&pool->conns[i]); /* failures retry from the loop */
    out = pool;
    pool = NULL; /* now the caller's */
    goto done;
oom:
    sp_err_set(err, "database pool: out of memory");
done:
    sp_pool_free(pool); /* NULL is fine, so is a half-built pool */
    return out;
}

/* Runs every callback still owed, synchronously, then frees everything. */
void sp_pool_free(struct sp_pool *pool)
{
    struct pgq fail = {0}, busy;
    struct pgreq *req;
    int i;

    if (pool == NULL)
        return;
    pool->closing = 1; /* from here the public functions refuse work */
    for (i = 0; pool->conns != NULL && i < pool->conf.size; i++) {
        struct sp_pgconn *c = &pool->conns[i];

        while ((req = q_pop(&c->inflight)) != NULL)
            if (req->kind != PGREQ_RESET)
                q_push(&fail, req);
        conn_close(c);
        q_append(&fail, &c->pinned_q);
    }
    q_append(&fail, &pool->waiting);
    busy = pool->verdicts;
    pool->verdicts = (struct pgq){0};
    while ((req = q_pop(&busy)) != NULL)
        req_fail(req, req->verdict, req->verdict_msg);
    while ((req = q_pop(&fail)) != NULL)
        req_fail(req, SP_PG_UNAVAILABLE, "database pool closed");
    for (i = 0; pool->conns != NULL && i < pool->conf.size; i++)
        if (pool->conns[i].timer != NULL)
            event_free(pool->conns[i].timer);
    free(pool->conns);
    if (pool->kick != NULL)
        event_free(pool->kick);
    if (pool->wait_timer != NULL)
        event_free(pool->wait_timer);
    for (i = 0; pool->kw != NULL && pool->kw[i] != NULL; i++) {
        free(pool->kw[i]);
        free(pool->vals[i]);
    }
    free(pool->kw);
    free(pool->vals);
    free(pool);
}

int sp_pool_query(struct sp_pool *pool,
                  const char *sql,
                  int nparams,
                  const char *const *values,
                  sp_pg_query_cb cb,
                  void *arg)
{
    struct pgreq *req;

    if (pool == NULL || pool->closing || cb == NULL || !req_args_ok(sql, nparams, values))
        return -1;
    if ((req = req_new(PGREQ_QUERY, sql, nparams, values)) == NULL)
        return -1;
    req->query_cb = cb;
    req->arg = arg;
    pool_enqueue(pool, req);
    return 0;
}

int sp_pool_acquire(struct sp_pool *pool, sp_pg_conn_cb cb, void *arg)
{
    struct pgreq *req;

    if (pool == NULL || pool->closing || cb == NULL)
        return -1;
    if ((req = req_new(PGREQ_ACQUIRE, NULL, 0, NULL)) == NULL)
        return -1;
    req->conn_cb = cb;
    req->arg = arg;
    pool_enqueue(pool, req);
    return 0;
}

int sp_pool_query_on(struct sp_pgconn *conn,
                     const char *sql,
                     int nparams,
                     const char *const *values,
                     sp_pg_query_cb cb,
                     void *arg)
{
    struct pgreq *req;

    if (conn == NULL || conn->pool->closing || !conn->pinned || conn->returning || cb == NULL ||
        !req_args_ok(sql, nparams, values))
        return -1;
    if ((req = req_new(PGREQ_QUERY, sql, nparams, values)) == NULL)
        return -1;
    req->query_cb = cb;
    req->arg = arg;
    q_push(&conn->pinned_q, req); /* a lost connection answers it in conn_settle() */
    pool_kick(conn->pool);
    return 0;
}

void sp_pool_release(struct sp_pgconn *conn)
{
    if (conn == NULL || !conn->pinned || conn->returning)
        return;
    conn->returning = 1; /* conn_settle() rolls back or reconnects, after pinned_q */
    pool_kick(conn->pool);
}

void sp_pool_stats(const struct sp_pool *pool, struct sp_pool_stats *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    if (pool == NULL)
        return;
    out->total = pool->conf.size;
    out->queued = pool->waiting.len;
    for (i = 0; i < pool->conf.size; i++) {
        const struct sp_pgconn *c = &pool->conns[i];

        out->inflight += c->inflight.len;
        if (c->state == CONN_CONNECTING)
            out->connecting++;
        else if (c->state == CONN_BUSY || (c->state == CONN_READY && c->pinned))
            out->busy++;
        else if (c->state == CONN_READY)
            out->idle++;
    }
}

int sp_pool_cancel(struct sp_pool *pool, void *arg)
{
    struct pgreq **pp, *req;
    int n = 0;

    if (pool == NULL)
        return 0;
    pool->waiting.tail = NULL;
    for (pp = &pool->waiting.head; (req = *pp) != NULL;) {
        if (req->arg == arg && req->kind != PGREQ_RESET) {
            *pp = req->next;
            pool->waiting.len--;
            free(req);
            n++;
        } else {
            pool->waiting.tail = req;
            pp = &req->next;
        }
    }
    return n;
}

/* ---- the pool: queue, dispatch, down time ------------------------------------------------- */

/* Queues req, or answers SP_PG_BUSY (from the loop) when queue_max requests would wait. */
static void pool_enqueue(struct sp_pool *pool, struct pgreq *req)
{
    req->queued_us = sp_now_us();
    if (pool->waiting.len + 1 - pool_count_free(pool) > pool->conf.queue_max) {
        req->verdict = SP_PG_BUSY;
        req->verdict_msg = "too many requests waiting for a database connection";
        q_push(&pool->verdicts, req);
    } else {
        q_push(&pool->waiting, req);
    }
    pool_kick(pool);
}

static void pool_kick(struct sp_pool *pool)
{
    if (!pool->closing)
        event_active(pool->kick, EV_TIMEOUT, 1);
}

static void pool_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pool_dispatch(arg);
}

/* Moves everything along: answers verdicts, settles connections, hands out waiting work. Runs
 * from the loop only, as callbacks run from here. A callback may queue more: that is picked up
 * here when a connection is free, else by the next kick. */
static void pool_dispatch(struct sp_pool *pool)
{
    struct pgq verdicts = pool->verdicts;
    struct sp_pg_result ok = {.status = SP_PG_OK};
    struct sp_pgconn *c;
    struct pgreq *req, *prev;
    int i, long_room;

    if (pool->closing)
        return;
    pool->verdicts = (struct pgq){0}; /* a caller retrying on SP_PG_BUSY waits a loop turn */
    while ((req = q_pop(&verdicts)) != NULL)
        req_fail(req, req->verdict, req->verdict_msg);
    for (i = 0; i < pool->conf.size; i++)
        conn_settle(&pool->conns[i]);
    long_room = pool_long_room(pool);
    for (prev = NULL; (req = prev != NULL ? prev->next : pool->waiting.head) != NULL;) {
        int plain = req->kind == PGREQ_QUERY && !req->solo;

        if (plain && pool_known_long(pool, req)) {
            if (long_room == 0) { /* it waits for a long one to end; what comes after may go */
                prev = req;
                continue;
            }
            long_room--;
        }
        if ((!plain || (c = pool_short_conn(pool)) == NULL) &&
            (c = pool_free_conn(pool)) == NULL && (!plain || (c = pool_pipe_conn(pool)) == NULL))
            break; /* FIFO: what comes after waits too */
        q_unlink(&pool->waiting, prev, req);
        if (req->kind == PGREQ_QUERY) {
            conn_start(c, req);
            continue;
        }
        c->pinned = 1;
        req->conn_cb(req->arg, c, &ok);
        free(req);
    }
    pool_watch_down(pool);
}

/* A connection ready for the waiting queue, checked alive; NULL when none. */
static struct sp_pgconn *pool_free_conn(struct sp_pool *pool)
{
    int i;

    for (i = 0; i < pool->conf.size; i++) {
        struct sp_pgconn *c = &pool->conns[i];

        if (c->state != CONN_READY || c->pinned || c->inflight.head != NULL ||
            PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            continue;
        if (conn_check(c) == 0) /* a terminated backend is noticed here, not by the query */
            return c;
    }
    return NULL;
}

/* With pipeline_depth > 1, when none is idle: the unpinned connection with the fewest
 * statements in flight, below the depth, whose statements are all plain ones (no rollback, no
 * BEGIN of its own) and whose head is not stalled; of equals, the one whose head started last.
 * NULL when none: the request waits for the first connection to come free, as at depth 1.
 * Stalled: the head has run longer than PG_STALL_MIN_US and four typical statements (a slow
 * query, or a backend the machine keeps off the CPU, which on a loaded host lasts hundreds of
 * ms). What is sent behind it cannot move to another connection, so nothing more goes there.
 * Long: a statement in flight whose typical time is above PG_SHORT_US. Behind it a request
 * would wait for the rest of that statement on one connection, where in the queue it waits
 * for the first of all the connections to come free, much less when each statement is long;
 * the wake-up it would save is small beside such a statement's own cost. */
static struct sp_pgconn *pool_pipe_conn(struct sp_pool *pool)
{
    struct sp_pgconn *best = NULL;
    uint64_t now = sp_now_us(), stall = pool->stmt_us * 4;
    const struct pgreq *r;
    int i;

    if (stall < PG_STALL_MIN_US)
        stall = PG_STALL_MIN_US;
    for (i = 0; i < pool->conf.size; i++) {
        struct sp_pgconn *c = &pool->conns[i];

        if (c->state != CONN_BUSY || c->pinned || c->inflight.len >= pool->conf.pipeline_depth ||
            c->inflight.head->kind != PGREQ_QUERY || c->inflight.tail->solo ||
            now > c->head_us + stall)
            continue;
        for (r = c->inflight.head; r != NULL && r->expect_us <= PG_SHORT_US; r = r->next)
            ;
        if (r != NULL)
            continue; /* a long one in flight */
        if (best == NULL || c->inflight.len < best->inflight.len ||
            (c->inflight.len == best->inflight.len && c->head_us > best->head_us))
            best = c;
    }
    return best;
}

/* With pipeline_depth > 1, before an idle connection: a busy one whose statements in flight
 * are all known to be quick and expected to be done within PG_SHORT_US in all (the least
 * loaded of them). A plain query sent there keeps that backend awake: it reads the next
 * statement as it finishes one, instead of another backend being woken for it, which is most
 * of a short statement's cost to the database. The wait it may add is bounded by that sum;
 * a statement of unknown or long typical time is never queued behind. NULL when none. */
static struct sp_pgconn *pool_short_conn(struct sp_pool *pool)
{
    struct sp_pgconn *best = NULL;
    uint64_t now = sp_now_us(), best_left = 0;
    int i;

    if (pool->conf.pipeline_depth < 2)
        return NULL;
    for (i = 0; i < pool->conf.size; i++) {
        struct sp_pgconn *c = &pool->conns[i];
        uint64_t left = 0, ran;
        struct pgreq *r;

        if (c->state != CONN_BUSY || c->pinned || c->inflight.len >= pool->conf.pipeline_depth)
            continue;
        for (r = c->inflight.head; r != NULL; r = r->next) {
            if (r->kind != PGREQ_QUERY || r->solo || r->expect_us == 0)
                break;
            left += r->expect_us;
        }
        ran = now - c->head_us;
        if (r != NULL || ran > (uint64_t)c->inflight.head->expect_us * 4 + PG_SHORT_US)
            continue; /* a stranger, or a head that runs long past its habit */
        left = left > ran ? left - ran : 0;
        if (left > PG_SHORT_US)
            continue;
        if (best == NULL || left < best_left)
            best = c, best_left = left;
    }
    return best;
}

/* The slot of the SQL with this hash in the pool's table of typical times. */
static struct pgcost *pool_cost(struct sp_pool *pool, uint64_t hash)
{
    return &pool->costs[hash % PG_COSTS];
}

/* Whether req's SQL is known to take longer than PG_SHORT_US (its running mean). */
static int pool_known_long(struct sp_pool *pool, const struct pgreq *req)
{
    const struct pgcost *cost = pool_cost(pool, req->hash);

    return cost->hash == req->hash && cost->mean_us > PG_SHORT_US;
}

/* How many more long statements may start: half the connections may run them, at least one.
 * Statements known to be long are mostly the database's own work (a list that sorts and
 * shapes rows); more of them at once than that only share its cores, each slower, and their
 * backends crowd the machine's run queue. The other half stays for quick statements, whose
 * cost is mostly the round trip. */
static int pool_long_room(const struct sp_pool *pool)
{
    int i, n = 0, room = pool->conf.size / 2;

    if (room < 1)
        room = 1;
    for (i = 0; i < pool->conf.size; i++)
        for (const struct pgreq *r = pool->conns[i].inflight.head; r != NULL; r = r->next)
            n += r->kind == PGREQ_QUERY && r->expect_us > PG_SHORT_US;
    return n < room ? room - n : 0;
}

static int pool_count_free(const struct sp_pool *pool)
{
    int i, n = 0;

    for (i = 0; i < pool->conf.size; i++) {
        const struct sp_pgconn *c = &pool->conns[i];

        if (c->state == CONN_READY && !c->pinned && c->inflight.head == NULL)
            n += pool->conf.pipeline_depth;
        else if (c->state == CONN_BUSY && !c->pinned && c->inflight.len < pool->conf.pipeline_depth)
            n += pool->conf.pipeline_depth - c->inflight.len;
    }
    return n;
}

static void pool_counts(const struct sp_pool *pool, int *up, int *connecting)
{
    *up = *connecting = 0;
    for (int i = 0; i < pool->conf.size; i++) {
        *up += pool->conns[i].state == CONN_READY || pool->conns[i].state == CONN_BUSY;
        *connecting += pool->conns[i].state == CONN_CONNECTING;
    }
}

/* While no connection is up: when req stops waiting for one. At most PG_DOWN_WAIT_MS (or
 * connect_timeout_ms if shorter) from its arrival. While the database is known unreachable
 * (the latest connect failed): at once, unless a connect in progress started less than that
 * ago (the database may be back). A connect that hangs (a blackholed address) never holds a
 * request longer: it goes on in the background. */
static uint64_t pool_deadline(const struct sp_pool *pool, const struct pgreq *req, int connecting)
{
    uint64_t wait_us = (uint64_t)(pool->conf.connect_timeout_ms < PG_DOWN_WAIT_MS
                                      ? pool->conf.connect_timeout_ms
                                      : PG_DOWN_WAIT_MS) *
                       1000u;

    if (pool->unreachable && connecting == 0)
        return 0;
    if (pool->unreachable && pool->connect_us < req->queued_us)
        return pool->connect_us + wait_us; /* FIFO order holds: the same for all after it */
    return req->queued_us + wait_us;
}

/* While no connection is up, waiting requests get a short wait (pool_deadline()), and one
 * connect may skip its backoff for them, at most every PG_BACKOFF_MIN_MS: the first request
 * after the database returns finds it. */
static void pool_watch_down(struct sp_pool *pool)
{
    uint64_t now = sp_now_us(), deadline;
    int i, up, connecting;

    pool_counts(pool, &up, &connecting);
    if (up > 0) {
        pool->down_since_us = 0;
        evtimer_del(pool->wait_timer);
        return;
    }
    if (pool->down_since_us == 0)
        pool->down_since_us = now;
    if (pool->waiting.head == NULL) {
        evtimer_del(pool->wait_timer);
        return;
    }
    if (connecting == 0 && now - pool->kicked_us >= PG_BACKOFF_MIN_MS * 1000u) {
        for (i = 0; i < pool->conf.size; i++) {
            struct sp_pgconn *c = &pool->conns[i];

            if (c->state == CONN_DOWN && !c->pinned) {
                pool->kicked_us = now;
                evtimer_del(c->timer);
                conn_connect(c); /* may fail at once: a refused or absent socket */
                connecting += c->state == CONN_CONNECTING;
                break;
            }
        }
    }
    deadline = pool_deadline(pool, pool->waiting.head, connecting);
    struct timeval tv = ms_tv(deadline > now ? (deadline - now + 999) / 1000 : 0);
    evtimer_add(pool->wait_timer, &tv);
}

static void pool_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sp_pool *pool = arg;
    struct pgreq *req;
    int up, connecting;

    (void)fd;
    (void)what;
    pool_counts(pool, &up, &connecting);
    while (up == 0 && (req = pool->waiting.head) != NULL) {
        if (sp_now_us() < pool_deadline(pool, req, connecting))
            break; /* FIFO: the rest came later */
        req_fail(q_pop(&pool->waiting), SP_PG_UNAVAILABLE, pool->last_error);
    }
    pool_dispatch(pool);
}

/* Builds the PQconnectStartParams() arrays from conninfo (a URI or key=value), adding
 * fallback_application_name and, with a query timeout, the server's statement_timeout. */
static int pool_params(struct sp_pool *pool, const char *conninfo, sp_err *err)
{
    PQconninfoOption *opts, *o;
    char *errmsg = NULL, line[200], timeout[48] = "";
    const char *user_options = NULL;
    int n = 0, has_fallback = 0, rc = -1;
    struct sp_buf options = {0};

    if ((opts = PQconninfoParse(conninfo, &errmsg)) == NULL) {
        pg_line(line, sizeof(line), "", errmsg != NULL ? errmsg : "out of memory");
        sp_err_set(err, "invalid database conninfo: %s", line);
        goto done;
    }
    for (o = opts; o->keyword != NULL; o++)
        n += o->val != NULL;
    pool->kw = calloc((size_t)n + 3, sizeof(*pool->kw));
    pool->vals = calloc((size_t)n + 3, sizeof(*pool->vals));
    if (pool->kw == NULL || pool->vals == NULL)
        goto oom;
    n = 0;
    for (o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "options") == 0) {
            user_options = o->val;
            continue;
        }
        has_fallback |= strcmp(o->keyword, "fallback_application_name") == 0;
        pool->kw[n] = strdup(o->keyword);
        pool->vals[n] = strdup(o->val);
        if (pool->kw[n] == NULL || pool->vals[n] == NULL)
            goto oom_last;
        n++;
    }
    if (!has_fallback) {
        pool->kw[n] = strdup("fallback_application_name");
        pool->vals[n] = strdup(PG_APP_NAME);
        if (pool->kw[n] == NULL || pool->vals[n] == NULL)
            goto oom_last;
        n++;
    }
    if (pool->conf.query_timeout_ms > 0)
        snprintf(timeout, sizeof(timeout), "-c statement_timeout=%d", pool->conf.query_timeout_ms);
    if (user_options != NULL || timeout[0] != '\0') {
        sp_buf_printf(&options, "%s%s%s", user_options ? user_options : "",
                      user_options && timeout[0] ? " " : "", timeout);
        pool->kw[n] = strdup("options");
        pool->vals[n] = options.data; /* now the pool's */
        options.data = NULL;
        if (pool->kw[n] == NULL)
            goto oom_last;
        n++;
    }
    rc = 0;
    goto done;
oom_last:
    n++; /* the half-filled pair is freed with the rest */
oom:
    sp_err_set(err, "database pool: out of memory");
done:
    if (rc != 0 && pool->kw != NULL) {
        for (int i = 0; i < n; i++) {
            free(pool->kw[i]);
            free(pool->vals[i]);
        }
        free(pool->kw);
        free(pool->vals);
        pool->kw = pool->vals = NULL;
    }
    sp_buf_free(&options);
    PQconninfoFree(opts); /* NULL is fine */
    PQfreemem(errmsg);
    return rc;
}

/* ---- one connection ----------------------------------------------------------------------- */

static void conn_connect(struct sp_pgconn *c)
{
    struct sp_pool *pool = c->pool;

    /* may resolve a host name (getaddrinfo() blocks): configure an address or a socket dir */
    c->pg = PQconnectStartParams((const char *const *)pool->kw, (const char *const *)pool->vals, 0);
    if (c->pg == NULL) {
        conn_connect_failed(c, "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, pg_notice_ignore, NULL);
    c->state = CONN_CONNECTING;
    pool->connect_us = sp_now_us();
    conn_arm(c, pool->conf.connect_timeout_ms);
    /* as if PQconnectPoll() had said PGRES_POLLING_WRITING */
    if (PQstatus(c->pg) == CONNECTION_BAD || conn_watch(c, EV_WRITE) != 0)
        conn_connect_failed(c, PQerrorMessage(c->pg));
}

static void conn_connect_step(struct sp_pgconn *c)
{
    conn_unwatch(c); /* PQconnectPoll() may close this socket and open another */
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, EV_READ) != 0)
            conn_connect_failed(c, "cannot watch the socket");
        break;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, EV_WRITE) != 0)
            conn_connect_failed(c, "cannot watch the socket");
        break;
    case PGRES_POLLING_OK:
        conn_ready(c);
        break;
    default:
        conn_connect_failed(c, PQerrorMessage(c->pg));
        break;
    }
}

/* Closes c, keeps why for the requests the outage fails, and retries after a growing pause. */
static void conn_connect_failed(struct sp_pgconn *c, const char *why)
{
    struct sp_pool *pool = c->pool;

    int up, connecting;

    pg_line(pool->last_error, sizeof(pool->last_error), "database unavailable: ", why);
    conn_close(c);
    pool_counts(pool, &up, &connecting);
    if (up == 0)
        pool->unreachable = 1; /* requests fail at once now (pool_deadline()) */
    c->backoff_ms = c->backoff_ms == 0 ? PG_BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > PG_BACKOFF_MAX_MS)
        c->backoff_ms = PG_BACKOFF_MAX_MS;
    conn_arm(c, c->backoff_ms);
}

static void conn_ready(struct sp_pgconn *c)
{
    evtimer_del(c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg) ||
        conn_watch(c, EV_READ) != 0) {
        conn_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = CONN_READY;
    c->backoff_ms = 0;
    c->pool->unreachable = 0;
    for (int i = 0; i < c->pool->conf.size; i++) {
        struct sp_pgconn *d = &c->pool->conns[i];

        if (d->state == CONN_DOWN && !d->pinned && d->backoff_ms > 0) {
            d->backoff_ms = 0; /* the database is back: the others need not sit out theirs */
            conn_arm(d, 0);
        }
    }
    snprintf(c->pool->last_error, sizeof(c->pool->last_error),
             "database unavailable: no connection within %d ms",
             c->pool->conf.connect_timeout_ms < PG_DOWN_WAIT_MS ? c->pool->conf.connect_timeout_ms
                                                                : PG_DOWN_WAIT_MS);
}

/* Moves a connection along between statements: its pinned work, its return, a rollback, or the
 * failures a lost pinned connection owes. */
static void conn_settle(struct sp_pgconn *c)
{
    struct pgq lost;
    struct pgreq *req;

    if (c->pinned && c->state == CONN_DOWN) {
        lost = c->pinned_q; /* what is queued after this waits for the next dispatch */
        c->pinned_q = (struct pgq){0};
        while ((req = q_pop(&lost)) != NULL)
            req_fail(req, SP_PG_UNAVAILABLE, "database connection lost");
        if (c->returning) {
            c->pinned = c->returning = 0;
            conn_arm(c, 0); /* its transaction is gone anyway: reconnect now */
        }
        return;
    }
    if (c->state != CONN_READY)
        return;
    if (c->pinned) {
        if (c->pinned_q.head != NULL) {
            conn_start(c, q_pop(&c->pinned_q));
            return;
        }
        if (!c->returning)
            return;
        c->pinned = c->returning = 0;
    }
    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
        break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        conn_start(c, &c->reset); /* nobody else may see a half-done transaction */
        break;
    default:
        conn_lost(c, "connection in an unknown state");
        break;
    }
}

/* Sends req on c behind what is in flight: the prepared statement for its sql (its Parse
 * first if new to c), then a Sync of its own. */
static void conn_start(struct sp_pgconn *c, struct pgreq *req)
{
    struct pgstmt *st;
    char name[16];
    int ok;

    struct pgcost *cost = pool_cost(c->pool, req->hash);

    req->nres = 0;
    req->expect_us = req->kind == PGREQ_QUERY && cost->hash == req->hash ? cost->mean_us : 0;
    q_push(&c->inflight, req);
    c->state = CONN_BUSY;
    if (c->inflight.len == 1) {
        c->head_us = sp_now_us();
        conn_guard(c);
    }
    if (req->kind == PGREQ_RESET) {
        req->step = PGREQ_EXECUTE;
        ok = PQsendQueryParams(c->pg, req->sql, 0, NULL, NULL, NULL, NULL, 0);
    } else if ((st = stmt_find(c, req)) != NULL && !st->pending) {
        req->step = PGREQ_EXECUTE;
        ok = PQsendQueryPrepared(c->pg, st->name, req->nparams, req->values, NULL, NULL, 0);
    } else if (st == NULL && c->nstmts < PG_STMT_MAX) {
        req->step = PGREQ_PREPARE;
        snprintf(name, sizeof(name), "sp%d", ++c->stmt_seq);
        stmt_add(c, req, name); /* out of memory: not cached, still run once */
        ok = PQsendPrepare(c->pg, name, req->sql, 0, NULL) && /* types: the server's */
             PQsendQueryPrepared(c->pg, name, req->nparams, req->values, NULL, NULL, 0);
    } else { /* its Parse is still in flight, or c holds all it may: unnamed */
        req->step = PGREQ_EXECUTE;
        ok = PQsendQueryParams(c->pg, req->sql, req->nparams, NULL, req->values, NULL, NULL, 0);
    }
    if (!ok || !PQpipelineSync(c->pg)) {
        conn_lost_pg(c);
        return;
    }
    conn_flush(c);
}

/* The head's answer came: its time joins the pool's running mean and its SQL's (1/8 weight),
 * and the next statement in flight (if any) starts now. */
static void conn_timed(struct sp_pgconn *c, const struct pgreq *req)
{
    uint64_t now = sp_now_us(), took = now - c->head_us;
    struct pgcost *cost = pool_cost(c->pool, req->hash);

    c->pool->stmt_us = c->pool->stmt_us == 0 ? took : (c->pool->stmt_us * 7 + took) / 8;
    c->head_us = now;
    if (req->kind != PGREQ_QUERY)
        return;
    if (took > UINT32_MAX / 8)
        took = UINT32_MAX / 8;
    if (cost->hash != req->hash || cost->mean_us == 0) {
        cost->hash = req->hash; /* a newcomer takes the slot */
        cost->mean_us = took > 0 ? (uint32_t)took : 1;
    } else {
        cost->mean_us = (uint32_t)((cost->mean_us * 7 + took) / 8);
        if (cost->mean_us == 0)
            cost->mean_us = 1;
    }
}

/* Arms c's guard for the statement at the head of inflight (the one the server runs now): the
 * query timeout plus slack; for the pool's own ROLLBACK without one, the connect timeout. */
static void conn_guard(struct sp_pgconn *c)
{
    const struct sp_pool_conf *conf = &c->pool->conf;

    if (c->inflight.head == NULL)
        evtimer_del(c->timer);
    else if (conf->query_timeout_ms > 0)
        conn_arm(c, (long)conf->query_timeout_ms + PG_GUARD_SLACK_MS);
    else if (c->inflight.head->kind == PGREQ_RESET)
        conn_arm(c, conf->connect_timeout_ms);
    else
        evtimer_del(c->timer);
}

/* Sends what libpq holds; watches for writability until all is out. 0, or -1 when c was lost. */
static int conn_flush(struct sp_pgconn *c)
{
    int rc = PQflush(c->pg);

    if (rc < 0) {
        conn_lost_pg(c);
        return -1;
    }
    c->flushing = rc == 1;
    if (conn_watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ) != 0) {
        conn_lost(c, "database connection lost: cannot watch the socket");
        return -1;
    }
    return 0;
}

static void conn_busy_io(struct sp_pgconn *c, short what)
{
    if ((what & EV_READ) && !PQconsumeInput(c->pg)) {
        conn_lost_pg(c);
        return;
    }
    if (c->flushing && conn_flush(c) != 0)
        return;
    conn_read(c);
}

/* Takes the results that have arrived, in order: each request's run up to its Sync. */
static void conn_read(struct sp_pgconn *c)
{
    PGresult *res;
    int nulls = 0;

    while (c->inflight.head != NULL) {
        if (PQisBusy(c->pg))
            break; /* more to come: EV_READ again */
        if ((res = PQgetResult(c->pg)) == NULL) {
            if (++nulls > 1) { /* libpq has nothing left for what we think is in flight */
                conn_lost(c, "database connection lost: pipeline out of step");
                return;
            }
            continue; /* the end of one statement's results */
        }
        nulls = 0;
        switch (PQresultStatus(res)) {
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            PQclear(res);
            conn_lost(c, "copy is not supported"); /* the only way out of the copy */
            return;
        case PGRES_PIPELINE_SYNC:
            PQclear(res);
            if (conn_done(c) != 0)
                return;
            break;
        default:
            conn_keep(c, res); /* c owns res now */
            break;
        }
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        conn_lost_pg(c);
}

/* Keeps the head's first error, else its last result; the result of its Parse settles the
 * statement cache and is not kept. */
static void conn_keep(struct sp_pgconn *c, PGresult *res)
{
    struct pgreq *req = c->inflight.head;
    ExecStatusType st = PQresultStatus(res);

    if (req->step == PGREQ_PREPARE && req->nres++ == 0) {
        struct pgstmt *stmt = stmt_find(c, req);

        if (st == PGRES_COMMAND_OK) {
            if (stmt != NULL)
                stmt->pending = 0;
            PQclear(res);
            return;
        }
        stmt_forget(c, req); /* it was not made: the next one prepares afresh */
    }
    if (c->res != NULL && (PQresultStatus(c->res) == PGRES_FATAL_ERROR ||
                           st == PGRES_PIPELINE_ABORTED)) {
        PQclear(res);
        return;
    }
    PQclear(c->res);
    c->res = res;
}

/* The head's Sync came: answers it. 0, or -1 when c was lost (and every request on it failed). */
static int conn_done(struct sp_pgconn *c)
{
    struct pgreq *req = c->inflight.head;
    PGresult *res = c->res;
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int failed = st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
                 st == PGRES_BAD_RESPONSE || st == PGRES_PIPELINE_ABORTED;
    struct sp_pg_result r = {.status = SP_PG_OK};
    char line[256];

    if (res == NULL || (failed && res_fatal(res))) {
        conn_lost_pg(c); /* the backend is going away, or libpq gave up on it */
        return -1;
    }
    c->res = NULL;
    q_pop(&c->inflight);
    if (c->inflight.head == NULL)
        c->state = CONN_READY;
    conn_timed(c, req);
    conn_guard(c);
    if (req->kind == PGREQ_RESET) {
        PQclear(res);
        if (st != PGRES_COMMAND_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
            conn_lost(c, "rollback failed");
            return -1;
        }
        return 0;
    }
    if (failed) {
        r.status = SP_PG_ERROR;
        r.sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE); /* res_fatal(): not NULL */
        r.message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        r.constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
        r.detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
        if (r.message == NULL) {
            pg_line(line, sizeof(line), "", PQresultErrorMessage(res));
            r.message = line;
        }
        /* 26000: the statement was deallocated behind our back; 0A000: "cached plan must not
         * change result type" after DDL. Prepare afresh next time. */
        if (req->step == PGREQ_EXECUTE &&
            (strcmp(r.sqlstate, "26000") == 0 || strcmp(r.sqlstate, "0A000") == 0))
            stmt_forget(c, req);
    } else {
        r.res = res;
    }
    req_answer(req, &r); /* may queue more: pool_dispatch() picks it up */
    PQclear(res);
    return 0;
}

/* 0 when c (READY) is still connected; else it is closed, -1. */
static int conn_check(struct sp_pgconn *c)
{
    PGnotify *n;

    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
        conn_lost_pg(c);
        return -1;
    }
    while ((n = PQnotifies(c->pg)) != NULL)
        PQfreemem(n); /* nobody here LISTENs */
    return 0;
}

/* c failed: closes it, answers every statement in flight on it with msg, reconnects after a
 * pause. A pinned connection stays down until given back: its transaction is gone, and
 * reconnecting underneath would run the rest outside it. */
static void conn_lost(struct sp_pgconn *c, const char *msg)
{
    struct pgq lost = c->inflight;
    struct pgreq *req;
    char line[256];

    snprintf(line, sizeof(line), "%s", msg); /* msg may live in c->pg or c->res */
    c->inflight = (struct pgq){0};
    conn_close(c);
    if (!c->pinned)
        conn_arm(c, PG_BACKOFF_MIN_MS);
    while ((req = q_pop(&lost)) != NULL)
        if (req->kind != PGREQ_RESET)
            req_fail(req, SP_PG_UNAVAILABLE, line);
}

/* conn_lost() with what the server or libpq said. */
static void conn_lost_pg(struct sp_pgconn *c)
{
    const char *msg = NULL;
    char line[256];

    if (c->res != NULL)
        msg = PQresultErrorField(c->res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = PQerrorMessage(c->pg);
    pg_line(line, sizeof(line), "database connection lost: ", msg);
    conn_lost(c, line);
}

/* Drops c's connection and what hangs off it; inflight and the queues are the caller's. */
static void conn_close(struct sp_pgconn *c)
{
    conn_unwatch(c); /* before PQfinish() closes the socket under it */
    if (c->timer != NULL)
        evtimer_del(c->timer);
    PQclear(c->res);
    c->res = NULL;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    stmts_clear(c);
    c->flushing = 0;
    c->state = CONN_DOWN;
}

/* Watches c's socket for what (persistently); 0, or -1 when it cannot. */
static int conn_watch(struct sp_pgconn *c, short what)
{
    evutil_socket_t fd = PQsocket(c->pg);

    if (c->io != NULL && c->io_what == what)
        return 0;
    conn_unwatch(c);
    if (fd < 0)
        return -1;
    c->io = event_new(c->pool->base, fd, what | EV_PERSIST, conn_io_cb, c);
    if (c->io == NULL || event_add(c->io, NULL) != 0) {
        conn_unwatch(c);
        return -1;
    }
    c->io_what = what;
    return 0;
}

static void conn_unwatch(struct sp_pgconn *c)
{
    if (c->io != NULL)
        event_free(c->io); /* fine from inside its own callback */
    c->io = NULL;
    c->io_what = 0;
}

static void conn_arm(struct sp_pgconn *c, long ms)
{
    struct timeval tv = ms_tv((uint64_t)ms);

    evtimer_add(c->timer, &tv);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sp_pgconn *c = arg;

    (void)fd;
    switch (c->state) {
    case CONN_CONNECTING:
        conn_connect_step(c);
        break;
    case CONN_READY:
        conn_check(c); /* nothing asked: an error, a notice, or the end */
        break;
    case CONN_BUSY:
        conn_busy_io(c, what);
        break;
    case CONN_DOWN:
        break;
    }
    pool_dispatch(c->pool);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sp_pgconn *c = arg;
    char why[64];

    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_DOWN:
        conn_connect(c);
        break;
    case CONN_CONNECTING:
        snprintf(why, sizeof(why), "connection timed out after %d ms",
                 c->pool->conf.connect_timeout_ms);
        conn_connect_failed(c, why);
        break;
    case CONN_BUSY:
        conn_lost(c, "query timed out"); /* PQcancel() blocks: close instead */
        break;
    case CONN_READY:
        break;
    }
    pool_dispatch(c->pool);
}

/* ---- the statement cache: SQL text -> "spN", per connection, cleared when it closes ------- */

static struct pgstmt *stmt_find(const struct sp_pgconn *c, const struct pgreq *req)
{
    int i;

    for (i = 0; i < c->nstmts; i++)
        if (c->stmts[i].hash == req->hash && strcmp(c->stmts[i].sql, req->sql) == 0)
            return &c->stmts[i];
    return NULL;
}

/* Remembers that req's sql is being prepared as name. */
static void stmt_add(struct sp_pgconn *c, const struct pgreq *req, const char *name)
{
    struct pgstmt *st;

    if (c->nstmts == c->capstmts) {
        int cap = c->capstmts ? c->capstmts * 2 : 16;

        if ((st = realloc(c->stmts, (size_t)cap * sizeof(*st))) == NULL)
            return;
        c->stmts = st;
        c->capstmts = cap;
    }
    st = &c->stmts[c->nstmts];
    if ((st->sql = strdup(req->sql)) == NULL)
        return;
    st->hash = req->hash;
    snprintf(st->name, sizeof(st->name), "%s", name);
    st->pending = 1;
    c->nstmts++;
}

static void stmt_forget(struct sp_pgconn *c, const struct pgreq *req)
{
    struct pgstmt *st = stmt_find(c, req);

    if (st == NULL)
        return;
    free(st->sql);
    *st = c->stmts[--c->nstmts];
}

static void stmts_clear(struct sp_pgconn *c)
{
    int i;

    for (i = 0; i < c->nstmts; i++)
        free(c->stmts[i].sql);
    free(c->stmts);
    c->stmts = NULL;
    c->nstmts = c->capstmts = c->stmt_seq = 0;
}

/* ---- requests and queues ------------------------------------------------------------------ */

/* A request holding copies of sql and values, zeroed otherwise; free() frees it all. */
static struct pgreq *
req_new(enum pgreq_kind kind, const char *sql, int nparams, const char *const *values)
{
    size_t size = sizeof(struct pgreq) + (size_t)nparams * sizeof(char *);
    size_t sqllen = sql != NULL ? strlen(sql) + 1 : 0, n;
    struct pgreq *req;
    char **vals, *p;
    int i;

    size += sqllen;
    for (i = 0; i < nparams; i++)
        size += values[i] != NULL ? strlen(values[i]) + 1 : 0;
    if ((req = calloc(1, size)) == NULL)
        return NULL;
    vals = (char **)(req + 1);
    p = (char *)(vals + nparams);
    req->kind = kind;
    req->nparams = nparams;
    req->values = (const char *const *)vals;
    if (sql != NULL) {
        memcpy(p, sql, sqllen);
        req->sql = p;
        req->hash = sql_hash(sql, sqllen - 1);
        req->solo = sql_opens_transaction(sql);
        p += sqllen;
    }
    for (i = 0; i < nparams; i++) {
        if (values[i] == NULL)
            continue; /* SQL NULL; calloc left it NULL */
        n = strlen(values[i]) + 1;
        memcpy(p, values[i], n);
        vals[i] = p;
        p += n;
    }
    return req;
}

static int req_args_ok(const char *sql, int nparams, const char *const *values)
{
    return sql != NULL && nparams >= 0 && nparams <= PG_PARAMS_MAX &&
           (nparams == 0 || values != NULL);
}

/* Runs req's callback with r, then frees req (the pool's own ROLLBACK has neither). */
static void req_answer(struct pgreq *req, const struct sp_pg_result *r)
{
    if (req->kind == PGREQ_QUERY)
        req->query_cb(req->arg, r);
    else if (req->kind == PGREQ_ACQUIRE)
        req->conn_cb(req->arg, NULL, r);
    if (req->kind != PGREQ_RESET)
        free(req);
}

static void req_fail(struct pgreq *req, enum sp_pg_status status, const char *msg)
{
    struct sp_pg_result r = {.status = status, .message = msg};

    req_answer(req, &r);
}

static void q_push(struct pgq *q, struct pgreq *req)
{
    req->next = NULL;
    if (q->tail != NULL)
        q->tail->next = req;
    else
        q->head = req;
    q->tail = req;
    q->len++;
}

static struct pgreq *q_pop(struct pgq *q)
{
    struct pgreq *req = q->head;

    if (req == NULL)
        return NULL;
    q->head = req->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->len--;
    req->next = NULL;
    return req;
}

/* Takes req, which follows prev (NULL: req is the head), out of q. */
static void q_unlink(struct pgq *q, struct pgreq *prev, struct pgreq *req)
{
    if (prev == NULL)
        q->head = req->next;
    else
        prev->next = req->next;
    if (q->tail == req)
        q->tail = prev;
    q->len--;
    req->next = NULL;
}

/* Moves all of from to the end of to. */
static void q_append(struct pgq *to, struct pgq *from)
{
    struct pgreq *req;

    while ((req = q_pop(from)) != NULL)
        q_push(to, req);
}

/* ---- small helpers ------------------------------------------------------------------------ */

/* 1 when the error ends the session (FATAL, PANIC) or came from libpq itself (no SQLSTATE). */
static int res_fatal(const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

    if (PQresultErrorField(res, PG_DIAG_SQLSTATE) == NULL)
        return 1;
    return sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* prefix and the first line of msg (libpq's span several and end in a newline) into buf. */
static void pg_line(char *buf, size_t cap, const char *prefix, const char *msg)
{
    int n = msg != NULL ? (int)strcspn(msg, "\n") : 0;

    if (n == 0)
        snprintf(buf, cap, "%sconnection closed", prefix);
    else
        snprintf(buf, cap, "%s%.*s", prefix, n, msg);
}

/* Server notices (warnings, "there is no transaction in progress") are not the client's news. */
static void pg_notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* 1 when sql starts (after blanks and comments) with BEGIN or START: it leaves its connection
 * inside a transaction, which nothing else may join. */
static int sql_opens_transaction(const char *sql)
{
    const char *p = sql;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");

            if (end == NULL)
                return 0;
            p = end + 2;
        } else {
            break;
        }
    }
    return word_is(p, "begin") || word_is(p, "start");
}

/* 1 when p starts with the keyword w (lower case), in any case, as a whole word. */
static int word_is(const char *p, const char *w)
{
    size_t n = strlen(w);
    char next;

    if (strncasecmp(p, w, n) != 0)
        return 0;
    next = p[n];
    return !((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
             (next >= '0' && next <= '9') || next == '_' || (unsigned char)next >= 0x80);
}

/* FNV-1a over the length and 32 bytes spread over the text: a statement's SQL is often a few
 * kilobytes, hashed on every query; stmt_find() compares the whole text anyway. */
static uint64_t sql_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037u ^ (uint64_t)len;
    size_t step = len / 32 + 1;

    for (size_t i = 0; i < len; i += step)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static struct timeval ms_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    return tv;
}
