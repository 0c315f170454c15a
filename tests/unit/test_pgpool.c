/* test_pgpool.c: the worker's PostgreSQL pool against a real server, no mocks.
 * SPACER_TEST_DATABASE_URL names the database (tools/test.sh starts a throw-away cluster); without
 * it every test fails. Tables made here are called pgpool_test_* and dropped again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pgpool.h"
#include "sp.h"

#define MAXR    4
#define MAXC    8
#define WAIT_MS 10000

struct t {
    struct event_base *base;
    struct event *tick; /* wakes the loop so that loop_until() can look at the clock */
    const char *url;
    int depth; /* pipeline_depth of the pools opened */
};

/* What one query callback saw, copied out of the result. */
struct qres {
    int done;
    enum sp_pg_status status;
    char sqlstate[6], message[256], constraint[64], detail[256];
    int ntuples, nfields;
    char val[MAXR][MAXC][64];
    int isnull[MAXR][MAXC];
    uint64_t at_us;
};

struct acq {
    int done;
    enum sp_pg_status status;
    struct sp_pgconn *conn;
    char message[256];
};

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static void on_query(void *arg, const struct sp_pg_result *r)
{
    struct qres *q = arg;

    q->done++;
    q->status = r->status;
    q->at_us = sp_now_us();
    copy(q->sqlstate, sizeof(q->sqlstate), r->sqlstate);
    copy(q->message, sizeof(q->message), r->message);
    copy(q->constraint, sizeof(q->constraint), r->constraint);
    copy(q->detail, sizeof(q->detail), r->detail);
    if (r->status != SP_PG_OK)
        return;
    assert_non_null(r->res);
    q->ntuples = PQntuples(r->res);
    q->nfields = PQnfields(r->res);
    for (int i = 0; i < q->ntuples && i < MAXR; i++)
        for (int j = 0; j < q->nfields && j < MAXC; j++) {
            q->isnull[i][j] = PQgetisnull(r->res, i, j);
            copy(q->val[i][j], sizeof(q->val[i][j]), PQgetvalue(r->res, i, j));
        }
}

static void on_acquire(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r)
{
    struct acq *a = arg;

    a->done++;
    a->status = r->status;
    a->conn = conn;
    copy(a->message, sizeof(a->message), r->message);
    if (r->status == SP_PG_OK)
        assert_non_null(conn);
    else
        assert_null(conn);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *count reaches want or ms pass. */
static void loop_until(struct t *t, const int *count, int want, int ms)
{
    uint64_t end = sp_now_us() + (uint64_t)ms * 1000;
    struct timeval tv = {0, 10000};

    while (*count < want && sp_now_us() < end) {
        evtimer_add(t->tick, &tv);
        event_base_loop(t->base, EVLOOP_ONCE);
    }
    evtimer_del(t->tick);
}

static void loop_for(struct t *t, int ms)
{
    int never = 0;

    loop_until(t, &never, 1, ms);
}

static struct sp_pool *
pool_open(struct t *t, const char *conninfo, int size, int queue_max, int connect_ms, int query_ms)
{
    struct sp_pool_conf conf = {conninfo, size, queue_max, connect_ms, query_ms, t->depth};
    sp_err err = {{0}};
    struct sp_pool *pool = sp_pool_new(t->base, &conf, &err);

    if (pool == NULL)
        fail_msg("sp_pool_new: %s", err.msg);
    return pool;
}

/* Waits until n connections are idle. */
static void wait_idle(struct t *t, struct sp_pool *pool, int n)
{
    struct sp_pool_stats st;
    uint64_t end = sp_now_us() + WAIT_MS * 1000u;

    for (;;) {
        sp_pool_stats(pool, &st);
        if (st.idle == n)
            return;
        if (sp_now_us() > end)
            fail_msg("pool never had %d idle connections (idle %d, busy %d, connecting %d)", n,
                     st.idle, st.busy, st.connecting);
        loop_for(t, 10);
    }
}

/* One statement on the pool, waited for; the callback must not come before the loop runs. */
static void query(
    struct t *t, struct sp_pool *pool, const char *sql, int n, const char *const *v, struct qres *q)
{
    memset(q, 0, sizeof(*q));
    assert_int_equal(sp_pool_query(pool, sql, n, v, on_query, q), 0);
    assert_int_equal(q->done, 0);
    loop_until(t, &q->done, 1, WAIT_MS);
    assert_int_equal(q->done, 1);
}

static void query_on(struct t *t,
                     struct sp_pgconn *conn,
                     const char *sql,
                     int n,
                     const char *const *v,
                     struct qres *q)
{
    memset(q, 0, sizeof(*q));
    assert_int_equal(sp_pool_query_on(conn, sql, n, v, on_query, q), 0);
    assert_int_equal(q->done, 0);
    loop_until(t, &q->done, 1, WAIT_MS);
    assert_int_equal(q->done, 1);
}

/* Runs sql, which must succeed. */
static void
ok(struct t *t, struct sp_pool *pool, const char *sql, int n, const char *const *v, struct qres *q)
{
    query(t, pool, sql, n, v, q);
    if (q->status != SP_PG_OK)
        fail_msg("%s: status %d %s %s", sql, q->status, q->sqlstate, q->message);
}

static struct sp_pgconn *acquire(struct t *t, struct sp_pool *pool)
{
    struct acq a = {0};

    assert_int_equal(sp_pool_acquire(pool, on_acquire, &a), 0);
    assert_int_equal(a.done, 0);
    loop_until(t, &a.done, 1, WAIT_MS);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, SP_PG_OK);
    return a.conn;
}

/* A loopback port that refuses (bound, not listening) or stays silent (listening, never
 * accepting); the caller closes *fd. */
static int local_port(int listening, int *fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (listening)
        assert_int_equal(listen(*fd, 64), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

static double ms_between(uint64_t from, uint64_t to)
{
    return (double)(to - from) / 1000.0;
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int setup(void **state)
{
    const char *url = getenv("SPACER_TEST_DATABASE_URL");
    struct t *t;

    if (url == NULL || url[0] == '\0') {
        print_error("SPACER_TEST_DATABASE_URL is not set: the pool tests need a PostgreSQL "
                    "(tools/test.sh starts a throw-away one), e.g.\n"
                    "  SPACER_TEST_DATABASE_URL='host=/tmp/pg port=5432 dbname=postgres'\n");
        return -1;
    }
    t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->url = url;
    t->base = event_base_new();
    assert_non_null(t->base);
    t->tick = evtimer_new(t->base, tick_cb, NULL);
    assert_non_null(t->tick);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;

    event_free(t->tick);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_text_results(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 2, 10, 5000, 0);
    struct qres q;

    ok(t, pool,
       "SELECT 42::int4, 'h\xc3\xa9llo'::text, NULL::int, true, 1.50::numeric(4,2), "
       "'2024-01-02 03:04:05+00'::timestamptz AT TIME ZONE 'UTC', '{1,2}'::int[], ''::text",
       0, NULL, &q);
    assert_int_equal(q.ntuples, 1);
    assert_int_equal(q.nfields, 8);
    assert_string_equal(q.val[0][0], "42");
    assert_string_equal(q.val[0][1], "h\xc3\xa9llo");
    assert_true(q.isnull[0][2]);
    assert_string_equal(q.val[0][3], "t");
    assert_string_equal(q.val[0][4], "1.50");
    assert_string_equal(q.val[0][5], "2024-01-02 03:04:05");
    assert_string_equal(q.val[0][6], "{1,2}");
    assert_false(q.isnull[0][7]);
    assert_string_equal(q.val[0][7], "");

    ok(t, pool, "SELECT g FROM generate_series(1, 3) AS g ORDER BY g", 0, NULL, &q);
    assert_int_equal(q.ntuples, 3);
    assert_string_equal(q.val[2][0], "3");

    ok(t, pool, "SELECT 1 WHERE false", 0, NULL, &q);
    assert_int_equal(q.ntuples, 0);
    assert_int_equal(q.nfields, 1);

    if (strstr(t->url, "application_name") == NULL) {
        ok(t, pool, "SELECT current_setting('application_name')", 0, NULL, &q);
        assert_string_equal(q.val[0][0], "spacer");
    }
    sp_pool_free(pool);
}

static void test_params_copied_null(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    char sql[128], a[16], c[32];
    const char *v[4] = {a, NULL, c, ""};
    struct qres q = {0};

    snprintf(sql, sizeof(sql), "SELECT $1::int + 1, $2::text IS NULL, $3::text, $4::text, $2");
    snprintf(a, sizeof(a), "41");
    snprintf(c, sizeof(c), "h\xc3\xa9llo 'w\"rld");
    assert_int_equal(sp_pool_query(pool, sql, 4, v, on_query, &q), 0);
    memset(sql, 'x', sizeof(sql) - 1); /* the pool has its own copies */
    memset(a, '9', sizeof(a) - 1);
    memset(c, 'z', sizeof(c) - 1);
    v[3] = "gone";
    assert_int_equal(q.done, 0);
    loop_until(t, &q.done, 1, WAIT_MS);
    assert_int_equal(q.done, 1);
    assert_int_equal(q.status, SP_PG_OK);
    assert_string_equal(q.val[0][0], "42");
    assert_string_equal(q.val[0][1], "t");
    assert_string_equal(q.val[0][2], "h\xc3\xa9llo 'w\"rld");
    assert_false(q.isnull[0][3]);
    assert_string_equal(q.val[0][3], "");
    assert_true(q.isnull[0][4]);

    /* a parameter count the statement does not take is the caller's error, not an outage */
    query(t, pool, "SELECT $1::int", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_ERROR);
    assert_int_equal(strlen(q.sqlstate), 5);
    ok(t, pool, "SELECT $1::int", 1, (const char *const[]){"5"}, &q);
    assert_string_equal(q.val[0][0], "5");
    sp_pool_free(pool);
}

static void test_syntax_error(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    struct qres q;

    for (int i = 0; i < 2; i++) { /* not cached as prepared: fails the same way twice */
        query(t, pool, "SELEC 1", 0, NULL, &q);
        assert_int_equal(q.status, SP_PG_ERROR);
        assert_string_equal(q.sqlstate, "42601");
        assert_non_null(strstr(q.message, "syntax error"));
        assert_null(strchr(q.message, '\n'));
    }
    query(t, pool, "SELECT 1/0", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_ERROR);
    assert_string_equal(q.sqlstate, "22012");
    ok(t, pool, "SELECT 1", 0, NULL, &q); /* the connection survived */
    assert_string_equal(q.val[0][0], "1");
    sp_pool_free(pool);
}

static void test_unique_violation(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 2, 10, 5000, 0);
    const char *v[] = {"7"};
    struct qres q;

    ok(t, pool, "DROP TABLE IF EXISTS pgpool_test_uniq", 0, NULL, &q);
    ok(t, pool,
       "CREATE TABLE pgpool_test_uniq (id int CONSTRAINT pgpool_test_uniq_pkey PRIMARY KEY)", 0,
       NULL, &q);
    ok(t, pool, "INSERT INTO pgpool_test_uniq VALUES ($1)", 1, v, &q);
    query(t, pool, "INSERT INTO pgpool_test_uniq VALUES ($1)", 1, v, &q);
    assert_int_equal(q.status, SP_PG_ERROR);
    assert_string_equal(q.sqlstate, "23505");
    assert_string_equal(q.constraint, "pgpool_test_uniq_pkey");
    assert_string_equal(q.detail, "Key (id)=(7) already exists.");
    assert_non_null(strstr(q.message, "duplicate key"));
    ok(t, pool, "DROP TABLE pgpool_test_uniq", 0, NULL, &q);
    sp_pool_free(pool);
}

struct many {
    int done, ok, bad;
    int pids[8], npids;
};

struct many_one {
    struct many *m;
    int i;
};

static void on_many(void *arg, const struct sp_pg_result *r)
{
    struct many_one *one = arg;
    struct many *m = one->m;
    char want[16];

    m->done++;
    snprintf(want, sizeof(want), "%d", one->i * 2);
    if (r->status != SP_PG_OK || strcmp(PQgetvalue(r->res, 0, 0), want) != 0) {
        m->bad++;
        return;
    }
    m->ok++;
    int pid = atoi(PQgetvalue(r->res, 0, 1)), k;
    for (k = 0; k < m->npids && m->pids[k] != pid; k++)
        ;
    if (k == m->npids && m->npids < 8)
        m->pids[m->npids++] = pid;
}

static void test_concurrent_200(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 4, 1000, 5000, 0);
    struct many m = {0};
    struct many_one one[200];
    struct sp_pool_stats st;
    char buf[16];

    wait_idle(t, pool, 4);
    for (int i = 0; i < 200; i++) {
        const char *v[] = {buf};

        one[i] = (struct many_one){&m, i};
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(sp_pool_query(pool,
                                       "SELECT $1::int * 2, pg_backend_pid(), pg_sleep(0.002)", 1,
                                       v, on_many, &one[i]),
                         0);
    }
    assert_int_equal(m.done, 0);
    sp_pool_stats(pool, &st);
    assert_int_equal(st.queued, 200);
    loop_until(t, &m.done, 200, 30000);
    assert_int_equal(m.done, 200);
    assert_int_equal(m.ok, 200);
    assert_int_equal(m.npids, 4); /* all four connections took work */
    sp_pool_stats(pool, &st);
    assert_int_equal(st.total, 4);
    assert_int_equal(st.idle, 4);
    assert_int_equal(st.busy, 0);
    assert_int_equal(st.queued, 0);
    sp_pool_free(pool);
}

struct counts {
    int done, ok, busy, other;
};

static void on_count(void *arg, const struct sp_pg_result *r)
{
    struct counts *c = arg;

    c->done++;
    if (r->status == SP_PG_OK)
        c->ok++;
    else if (r->status == SP_PG_BUSY && r->message != NULL && r->message[0] != '\0')
        c->busy++;
    else
        c->other++;
}

static void test_queue_full_busy(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 2, 5000, 0);
    struct counts c = {0};
    struct sp_pool_stats st;

    wait_idle(t, pool, 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_count, &c), 0);
        assert_int_equal(c.done, 0); /* never from inside the call, not even SP_PG_BUSY */
    }
    sp_pool_stats(pool, &st);
    assert_int_equal(st.queued, 3); /* one about to run on the free connection, two waiting */
    loop_until(t, &c.done, 10, WAIT_MS);
    assert_int_equal(c.done, 10);
    assert_int_equal(c.ok, 3);
    assert_int_equal(c.busy, 7);
    assert_int_equal(c.other, 0);

    struct acq a = {0};
    for (int i = 0; i < 3; i++) /* acquires wait in the same queue */
        assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_count, &c), 0);
    assert_int_equal(sp_pool_acquire(pool, on_acquire, &a), 0);
    loop_until(t, &a.done, 1, WAIT_MS);
    assert_int_equal(a.status, SP_PG_BUSY);
    loop_until(t, &c.done, 13, WAIT_MS);
    assert_int_equal(c.ok, 6);
    sp_pool_free(pool);
}

/* A caller that goes away: its waiting work is dropped uncalled; the statement on the wire
 * still answers. */
static void test_cancel_waiting(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 100, 5000, 0);
    struct counts first = {0}, gone = {0}, last = {0};
    struct acq a = {0};
    struct sp_pool_stats st;

    wait_idle(t, pool, 1);
    assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.2)", 0, NULL, on_count, &first), 0);
    loop_for(t, 30); /* on the wire now */
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_count, &gone), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_count, &gone), 0);
    assert_int_equal(sp_pool_acquire(pool, on_acquire, &a), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_count, &last), 0);
    assert_int_equal(sp_pool_cancel(pool, &gone), 2);
    assert_int_equal(sp_pool_cancel(pool, &a), 1);
    assert_int_equal(sp_pool_cancel(pool, &gone), 0);
    assert_int_equal(sp_pool_cancel(pool, &first), 0); /* running: not dropped */
    assert_int_equal(sp_pool_cancel(NULL, &first), 0);
    sp_pool_stats(pool, &st);
    assert_int_equal(st.queued, 1);
    loop_until(t, &last.done, 1, WAIT_MS);
    assert_int_equal(first.ok, 1);
    assert_int_equal(last.ok, 1);
    loop_for(t, 50);
    assert_int_equal(gone.done, 0);
    assert_int_equal(a.done, 0);
    sp_pool_free(pool);
}

static void test_pinned_rollback(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    struct sp_pgconn *conn;
    struct qres q, q1, q2, q3;

    ok(t, pool, "DROP TABLE IF EXISTS pgpool_test_tx", 0, NULL, &q);
    ok(t, pool, "CREATE TABLE pgpool_test_tx (id int)", 0, NULL, &q);

    conn = acquire(t, pool);
    query_on(t, conn, "BEGIN", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_OK);
    query_on(t, conn, "INSERT INTO pgpool_test_tx VALUES (1)", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_OK);
    sp_pool_release(conn); /* no COMMIT: the pool rolls back */
    assert_int_equal(sp_pool_query_on(conn, "SELECT 1", 0, NULL, on_query, &q), -1);
    ok(t, pool, "SELECT count(*) FROM pgpool_test_tx", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "0");

    /* in a failed transaction, with statements still queued when it is released */
    conn = acquire(t, pool);
    memset(&q1, 0, sizeof(q1));
    memset(&q2, 0, sizeof(q2));
    memset(&q3, 0, sizeof(q3));
    assert_int_equal(sp_pool_query_on(conn, "BEGIN", 0, NULL, on_query, &q1), 0);
    assert_int_equal(
        sp_pool_query_on(conn, "INSERT INTO pgpool_test_tx VALUES (2)", 0, NULL, on_query, &q2), 0);
    assert_int_equal(sp_pool_query_on(conn, "SELECT 1/0", 0, NULL, on_query, &q3), 0);
    sp_pool_release(conn);
    assert_int_equal(q1.done + q2.done + q3.done, 0);
    loop_until(t, &q3.done, 1, WAIT_MS);
    assert_int_equal(q1.status, SP_PG_OK);
    assert_int_equal(q2.status, SP_PG_OK);
    assert_int_equal(q3.status, SP_PG_ERROR);
    assert_string_equal(q3.sqlstate, "22012");

    /* the one connection is usable, outside any transaction: this insert stays */
    ok(t, pool, "INSERT INTO pgpool_test_tx VALUES (3)", 0, NULL, &q);
    ok(t, pool, "SELECT string_agg(id::text, ',') FROM pgpool_test_tx", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "3");

    /* a BEGIN sent without a pin does not leak into the next request either */
    ok(t, pool, "BEGIN", 0, NULL, &q);
    ok(t, pool, "INSERT INTO pgpool_test_tx VALUES (4)", 0, NULL, &q);
    ok(t, pool, "SELECT count(*) FROM pgpool_test_tx", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "2");

    conn = acquire(t, pool);
    query_on(t, conn, "COMMIT", 0, NULL, &q); /* outside a transaction: a warning, still OK */
    assert_int_equal(q.status, SP_PG_OK);
    sp_pool_release(conn);
    ok(t, pool, "DROP TABLE pgpool_test_tx", 0, NULL, &q);
    sp_pool_free(pool);
}

struct chain {
    struct sp_pgconn *conn;
    int left, done, ok;
};

static void on_chain(void *arg, const struct sp_pg_result *r)
{
    struct chain *ch = arg;
    char buf[16];
    const char *v[] = {buf};

    ch->done++;
    if (r->status == SP_PG_OK && atoi(PQgetvalue(r->res, 0, 0)) == ch->left)
        ch->ok++;
    if (--ch->left <= 0)
        return;
    snprintf(buf, sizeof(buf), "%d", ch->left); /* from the callback, at once */
    assert_int_equal(sp_pool_query_on(ch->conn, "SELECT $1::int + 0 AS n", 1, v, on_chain, ch), 0);
}

static void test_prepared_reuse(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 2, 200, 5000, 0);
    const char *sql = "SELECT $1::int + 0 AS n";
    const char *v[] = {sql};
    struct chain ch = {0};
    struct qres q;
    struct counts c = {0};

    ch.conn = acquire(t, pool);
    ch.left = 100;
    assert_int_equal(sp_pool_query_on(ch.conn, sql, 1, (const char *const[]){"100"}, on_chain, &ch),
                     0);
    loop_until(t, &ch.done, 100, WAIT_MS);
    assert_int_equal(ch.done, 100);
    assert_int_equal(ch.ok, 100);
    query_on(t, ch.conn, "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", 1, v,
             &q);
    assert_int_equal(q.status, SP_PG_OK);
    assert_string_equal(q.val[0][0], "1");
    query_on(t, ch.conn,
             "SELECT count(*), bool_and(name ~ '^sp[0-9]+$') FROM pg_prepared_statements", 0, NULL,
             &q);
    assert_string_equal(q.val[0][0], "3"); /* the 100 times, and the two counts */
    assert_string_equal(q.val[0][1], "t");

    /* statements prepared inside a rolled back transaction are still there */
    query_on(t, ch.conn, "BEGIN", 0, NULL, &q);
    query_on(t, ch.conn, "SELECT 'in a transaction'", 0, NULL, &q);
    query_on(t, ch.conn, "ROLLBACK", 0, NULL, &q);
    query_on(t, ch.conn, "SELECT 'in a transaction'", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_OK);
    query_on(t, ch.conn, "SELECT count(*) FROM pg_prepared_statements", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "7");

    /* DEALLOCATE behind the pool's back costs one error, then it prepares afresh */
    query_on(t, ch.conn, "DEALLOCATE ALL", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_OK);
    query_on(t, ch.conn, sql, 1, (const char *const[]){"5"}, &q);
    assert_int_equal(q.status, SP_PG_ERROR);
    assert_string_equal(q.sqlstate, "26000");
    query_on(t, ch.conn, sql, 1, (const char *const[]){"5"}, &q);
    assert_int_equal(q.status, SP_PG_OK);
    assert_string_equal(q.val[0][0], "5");
    sp_pool_release(ch.conn);

    /* without a pin too: 100 runs on 2 connections prepare it at most twice */
    for (int i = 0; i < 100; i++)
        assert_int_equal(sp_pool_query(pool, "SELECT 'unpinned reuse'", 0, NULL, on_count, &c), 0);
    loop_until(t, &c.done, 100, WAIT_MS);
    assert_int_equal(c.ok, 100);
    for (int i = 0; i < 2; i++) {
        struct sp_pgconn *conn = acquire(t, pool);

        query_on(t, conn,
                 "SELECT count(*) FROM pg_prepared_statements "
                 "WHERE statement = 'SELECT ''unpinned reuse'''",
                 0, NULL, &q);
        assert_true(strcmp(q.val[0][0], "1") == 0 || strcmp(q.val[0][0], "0") == 0);
        sp_pool_release(conn);
    }
    sp_pool_free(pool);
}

/* Requests sent to a pool whose database cannot be reached: how long until each is answered. */
static double answer_ms(struct t *t, struct sp_pool *pool, struct qres *q)
{
    uint64_t t0 = sp_now_us();

    memset(q, 0, sizeof(*q));
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_query, q), 0);
    assert_int_equal(q->done, 0);
    loop_until(t, &q->done, 1, 10000);
    assert_int_equal(q->done, 1);
    assert_int_equal(q->status, SP_PG_UNAVAILABLE);
    assert_non_null(strstr(q->message, "database unavailable: "));
    return ms_between(t0, q->at_us);
}

static void unreachable(struct t *t, int listening, int connect_ms)
{
    char conninfo[160];
    int fd, port = local_port(listening, &fd);
    struct sp_pool *pool;
    struct sp_pool_stats st;
    struct qres q = {0};
    struct acq a = {0};
    uint64_t t0;
    double ms;

    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d dbname=nowhere user=nobody sslmode=disable", port);
    pool = pool_open(t, conninfo, 2, 10, connect_ms, 0);
    t0 = sp_now_us();
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_query, &q), 0);
    assert_int_equal(sp_pool_acquire(pool, on_acquire, &a), 0);
    assert_int_equal(q.done + a.done, 0);
    loop_until(t, &a.done, 1, 10000);
    assert_int_equal(q.done, 1);
    assert_int_equal(q.status, SP_PG_UNAVAILABLE);
    assert_int_equal(a.status, SP_PG_UNAVAILABLE);
    assert_non_null(strstr(q.message, "database unavailable: "));
    ms = ms_between(t0, q.at_us);
    print_message("  unavailable after %.0f ms: %s\n", ms, q.message);
    if (!listening) {
        /* refused: the connect fails at once, and so does the request */
        assert_non_null(strstr(q.message, "refused"));
        assert_true(ms < 200);
    } else {
        /* silent: the connects hang; a request waits 500 ms at most (or connect_timeout if
         * shorter), never the whole connect_timeout */
        int wait = connect_ms < 500 ? connect_ms : 500;
        assert_true(ms >= wait - 50 && ms < wait + 700);
    }

    /* while the database is known unreachable, later requests are answered at once */
    loop_for(t, listening ? connect_ms + 200 : 400);
    for (int i = 0; i < 5; i++) {
        ms = answer_ms(t, pool, &q);
        if (!listening)
            assert_true(ms < 150);
        else
            assert_true(ms < 700); /* at most one short wait for a fresh connect */
        loop_for(t, 30);
    }
    sp_pool_stats(pool, &st);
    assert_int_equal(st.total, 2);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.queued, 0);
    sp_pool_free(pool);
    close(fd);
}

static void test_unreachable_refused(void **state)
{
    unreachable(*state, 0, 300);
}

static void test_unreachable_silent(void **state)
{
    unreachable(*state, 1, 300);
}

/* A connect that hangs for its whole 5 s (a blackholed address) holds no request that long. */
static void test_unreachable_silent_long_connect(void **state)
{
    unreachable(*state, 1, 3000);
}

/* A database known unreachable (refused) with a connect_timeout of 5 s: a burst of requests is
 * answered at once, none waits for a connect. */
static void test_unreachable_many_fail_fast(void **state)
{
    struct t *t = *state;
    char conninfo[160];
    int fd, port = local_port(0, &fd);
    struct sp_pool *pool;
    struct many m = {0};
    struct many_one one[50];
    uint64_t t0;

    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d dbname=nowhere user=nobody sslmode=disable", port);
    pool = pool_open(t, conninfo, 4, 100, 5000, 0);
    loop_for(t, 50);
    t0 = sp_now_us();
    for (int i = 0; i < 50; i++) {
        one[i] = (struct many_one){&m, i};
        assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_many, &one[i]), 0);
    }
    loop_until(t, &m.done, 50, 10000);
    assert_int_equal(m.done, 50);
    assert_int_equal(m.bad, 50);
    print_message("  50 requests refused in %.0f ms\n", ms_between(t0, sp_now_us()));
    assert_true(ms_between(t0, sp_now_us()) < 300);
    sp_pool_free(pool);
    close(fd);
}

/* The backend pids of all n connections of pool, each pinned in turn. */
static void backend_pids(struct t *t, struct sp_pool *pool, int n, char *out, size_t cap)
{
    struct sp_pgconn *conns[8];
    struct qres q;
    size_t len = 0;

    for (int i = 0; i < n; i++)
        conns[i] = acquire(t, pool); /* all of them, so each pid is a different one */
    len += (size_t)snprintf(out, cap, "{");
    for (int i = 0; i < n; i++) {
        query_on(t, conns[i], "SELECT pg_backend_pid()", 0, NULL, &q);
        assert_int_equal(q.status, SP_PG_OK);
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", q.val[0][0]);
        sp_pool_release(conns[i]);
    }
    snprintf(out + len, cap - len, "}");
}

static void terminate(struct t *t, struct sp_pool *killer, const char *pids)
{
    const char *v[] = {pids};
    struct qres q;

    ok(t, killer, "SELECT bool_and(pg_terminate_backend(p, 5000)) FROM unnest($1::int[]) AS p", 1,
       v, &q);
    assert_string_equal(q.val[0][0], "t");
}

static void test_recovery_after_terminate(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 3, 100, 5000, 0);
    struct sp_pool *killer = pool_open(t, t->url, 1, 10, 5000, 0);
    struct many m = {0};
    struct many_one one[20];
    char pids[128], after[128], buf[16];

    wait_idle(t, pool, 3);
    backend_pids(t, pool, 3, pids, sizeof(pids));
    terminate(t, killer, pids);
    for (int i = 0; i < 20; i++) {
        const char *v[] = {buf};

        one[i] = (struct many_one){&m, i};
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(
            sp_pool_query(pool, "SELECT $1::int * 2, pg_backend_pid()", 1, v, on_many, &one[i]), 0);
    }
    loop_until(t, &m.done, 20, WAIT_MS);
    assert_int_equal(m.ok, 20);
    for (int i = 0; i < m.npids; i++) {
        char pid[16];

        snprintf(pid, sizeof(pid), "%d", m.pids[i]);
        assert_null(strstr(pids, pid)); /* new backends */
    }
    wait_idle(t, pool, 3); /* all three came back by themselves */
    backend_pids(t, pool, 3, after, sizeof(after));
    print_message("  backends %s, after reconnecting %s\n", pids, after);

    /* the same with the pool left alone: idle connections notice their loss */
    terminate(t, killer, after);
    loop_for(t, 50);
    wait_idle(t, pool, 3);
    struct qres q;
    ok(t, pool, "SELECT 1", 0, NULL, &q);
    sp_pool_free(killer);
    sp_pool_free(pool);
}

static void test_lost_mid_query(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    struct sp_pool *killer = pool_open(t, t->url, 1, 10, 5000, 0);
    struct sp_pgconn *conn;
    struct qres q, q1 = {0}, q2 = {0};
    char pids[80];

    conn = acquire(t, pool);
    query_on(t, conn, "SELECT pg_backend_pid()", 0, NULL, &q);
    snprintf(pids, sizeof(pids), "{%s}", q.val[0][0]);
    assert_int_equal(sp_pool_query_on(conn, "SELECT pg_sleep(30)", 0, NULL, on_query, &q1), 0);
    assert_int_equal(sp_pool_query_on(conn, "SELECT 1", 0, NULL, on_query, &q2), 0);
    loop_for(t, 50);
    uint64_t t0 = sp_now_us();
    terminate(t, killer, pids);
    loop_until(t, &q2.done, 1, WAIT_MS);
    assert_int_equal(q1.status, SP_PG_UNAVAILABLE);
    assert_int_equal(q2.status, SP_PG_UNAVAILABLE);
    print_message("  lost: %s\n", q1.message);
    assert_non_null(strstr(q1.message, "database connection lost"));
    assert_true(ms_between(t0, q1.at_us) < 5000);

    /* the pin is broken until given back: no statement runs outside its transaction */
    query_on(t, conn, "SELECT 1", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_UNAVAILABLE);
    sp_pool_release(conn);
    ok(t, pool, "SELECT 1", 0, NULL, &q);
    sp_pool_free(killer);
    sp_pool_free(pool);
}

static void test_query_timeout(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 200);
    struct qres q;
    uint64_t t0;

    ok(t, pool, "SHOW statement_timeout", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "200ms");
    t0 = sp_now_us();
    query(t, pool, "SELECT pg_sleep(5)", 0, NULL, &q); /* the server cancels it */
    assert_int_equal(q.status, SP_PG_ERROR);
    assert_string_equal(q.sqlstate, "57014");
    assert_true(ms_between(t0, q.at_us) < 600);

    ok(t, pool, "SET statement_timeout = 0", 0, NULL, &q); /* now only the client guard is left */
    t0 = sp_now_us();
    query(t, pool, "SELECT pg_sleep(5)", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_UNAVAILABLE);
    assert_string_equal(q.message, "query timed out");
    assert_true(ms_between(t0, q.at_us) >= 650 && ms_between(t0, q.at_us) < 2000);
    ok(t, pool, "SHOW statement_timeout", 0, NULL, &q); /* a new connection */
    assert_string_equal(q.val[0][0], "200ms");
    sp_pool_free(pool);
}

static void test_large_param_and_result(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    size_t n = 8 * 1000 * 1000;
    char *big = malloc(n + 1);
    const char *v[] = {big};
    struct qres q;

    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    ok(t, pool, "SELECT length($1), md5($1) = md5(repeat('a', 8000000))", 1, v, &q);
    assert_string_equal(q.val[0][0], "8000000");
    assert_string_equal(q.val[0][1], "t");
    free(big);
    ok(t, pool, "SELECT length(repeat('x', 6000000)), repeat('y', 10)", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "6000000");
    sp_pool_free(pool);
}

struct nest {
    struct sp_pool *pool;
    struct qres last;
    int step;
};

static void nest_query(void *arg, const struct sp_pg_result *r);

static void nest_acquired(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r)
{
    struct nest *n = arg;

    assert_int_equal(r->status, SP_PG_OK);
    n->step = 2;
    assert_int_equal(sp_pool_query_on(conn, "SELECT 'pinned'", 0, NULL, nest_query, n), 0);
    sp_pool_release(conn); /* at once: the queued statement still runs */
    assert_int_equal(n->step, 2);
}

static void nest_query(void *arg, const struct sp_pg_result *r)
{
    struct nest *n = arg;

    assert_int_equal(r->status, SP_PG_OK);
    if (n->step == 1) {
        assert_int_equal(sp_pool_acquire(n->pool, nest_acquired, n), 0);
        assert_int_equal(n->step, 1);
    } else if (n->step == 2) {
        n->step = 3;
        assert_int_equal(sp_pool_query(n->pool, "SELECT 'last'", 0, NULL, on_query, &n->last), 0);
    }
}

static void test_reentrant_callbacks(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool = pool_open(t, t->url, 1, 10, 5000, 0);
    struct nest n = {pool, {0}, 1};

    assert_int_equal(sp_pool_query(pool, "SELECT 'first'", 0, NULL, nest_query, &n), 0);
    loop_until(t, &n.last.done, 1, WAIT_MS);
    assert_int_equal(n.step, 3);
    assert_int_equal(n.last.status, SP_PG_OK);
    assert_string_equal(n.last.val[0][0], "last");
    sp_pool_free(pool);
}

struct freeing {
    struct sp_pool *pool;
    int done, unavailable, refused;
};

static void on_freeing(void *arg, const struct sp_pg_result *r)
{
    struct freeing *f = arg;

    f->done++;
    f->unavailable += r->status == SP_PG_UNAVAILABLE;
    f->refused += sp_pool_query(f->pool, "SELECT 1", 0, NULL, on_freeing, f) == -1;
}

static void on_freeing_acq(void *arg, struct sp_pgconn *conn, const struct sp_pg_result *r)
{
    (void)conn;
    on_freeing(arg, r);
}

static void test_free_fails_pending(void **state)
{
    struct t *t = *state;
    struct freeing f = {0};
    struct sp_pgconn *conn;
    struct qres q = {0};

    f.pool = pool_open(t, t->url, 2, 10, 5000, 0);
    conn = acquire(t, f.pool);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sp_pool_query(f.pool, "SELECT pg_sleep(1)", 0, NULL, on_freeing, &f), 0);
    assert_int_equal(sp_pool_acquire(f.pool, on_freeing_acq, &f), 0);
    assert_int_equal(sp_pool_query_on(conn, "SELECT pg_sleep(1)", 0, NULL, on_query, &q), 0);
    loop_for(t, 50); /* one sleep runs on the free connection, one on the pinned */
    sp_pool_free(f.pool);
    assert_int_equal(f.done, 5);
    assert_int_equal(f.unavailable, 5);
    assert_int_equal(f.refused, 5);
    assert_int_equal(q.done, 1);
    assert_int_equal(q.status, SP_PG_UNAVAILABLE);
}

static void test_misuse(void **state)
{
    struct t *t = *state;
    struct sp_pool_conf conf = {t->url, 0, 10, 5000, 0, 1};
    sp_err err = {{0}};
    struct sp_pool *pool;
    struct sp_pgconn *conn;
    struct qres q = {0};
    struct sp_pool_stats st;

    assert_null(sp_pool_new(t->base, &conf, &err));
    assert_true(err.msg[0] != '\0');
    conf = (struct sp_pool_conf){"host=/tmp bogus_option=1", 1, 10, 5000, 0, 1};
    assert_null(sp_pool_new(t->base, &conf, &err));
    assert_non_null(strstr(err.msg, "invalid database conninfo"));
    conf = (struct sp_pool_conf){"postgresql://u@h:5432/d?nosuch=1", 1, 10, 5000, 0, 1};
    assert_null(sp_pool_new(t->base, &conf, &err));
    assert_null(sp_pool_new(NULL, &conf, &err));
    sp_pool_free(NULL);
    sp_pool_release(NULL);

    pool = pool_open(t, t->url, 1, 10, 5000, 0);
    assert_int_equal(sp_pool_query(pool, NULL, 0, NULL, on_query, &q), -1);
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, NULL, &q), -1);
    assert_int_equal(sp_pool_query(pool, "SELECT $1", 1, NULL, on_query, &q), -1);
    assert_int_equal(sp_pool_query(pool, "SELECT 1", -1, NULL, on_query, &q), -1);
    assert_int_equal(sp_pool_acquire(pool, NULL, NULL), -1);
    conn = acquire(t, pool);
    sp_pool_stats(pool, &st);
    assert_int_equal(st.busy, 1);
    sp_pool_release(conn);
    sp_pool_release(conn); /* twice: ignored */
    assert_int_equal(sp_pool_query_on(conn, "SELECT 1", 0, NULL, on_query, &q), -1);
    wait_idle(t, pool, 1);
    ok(t, pool, "SELECT 1", 0, NULL, &q);
    sp_pool_free(pool);
}


/* ---- pipelining (pipeline_depth > 1) ------------------------------------------------------ */

/* 200 requests on one connection, eight at a time behind each other: every answer is its own,
 * in order, from the one backend. */
static void test_pipeline_many_on_one(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct many m = {0};
    struct many_one one[200];
    struct sp_pool_stats st;
    char buf[16];

    t->depth = 8;
    pool = pool_open(t, t->url, 1, 1000, 5000, 0);
    wait_idle(t, pool, 1);
    for (int i = 0; i < 200; i++) {
        const char *v[] = {buf};

        one[i] = (struct many_one){&m, i};
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(
            sp_pool_query(pool, "SELECT $1::int * 2, pg_backend_pid()", 1, v, on_many, &one[i]), 0);
    }
    loop_until(t, &m.done, 1, WAIT_MS); /* the first dispatch sent eight */
    sp_pool_stats(pool, &st);
    assert_true(st.inflight > 1 && st.inflight <= 8);
    loop_until(t, &m.done, 200, 30000);
    assert_int_equal(m.ok, 200);
    assert_int_equal(m.bad, 0);
    assert_int_equal(m.npids, 1);
    sp_pool_stats(pool, &st);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.queued, 0);
    sp_pool_free(pool);
}

/* A statement is not sent behind one that has stalled: with two connections at depth 4, one
 * held by a long pg_sleep, the quick statements that come meanwhile all go to the other one
 * (behind each other there), none behind the sleep; they are answered while it still runs. */
static void test_pipeline_not_behind_stalled(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct qres slow, quick[4], warm;

    t->depth = 4;
    pool = pool_open(t, t->url, 2, 100, 5000, 0);
    wait_idle(t, pool, 2);
    for (int i = 0; i < 8; i++)
        ok(t, pool, "SELECT 1", 0, NULL, &warm); /* a typical statement takes well under 75 ms */
    memset(&slow, 0, sizeof(slow));
    assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(2)", 0, NULL, on_query, &slow), 0);
    loop_for(t, 300); /* the sleep is on the wire now, its connection stalled */
    memset(quick, 0, sizeof(quick));
    for (int i = 0; i < 4; i++)
        assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_query, &quick[i]), 0);
    for (int i = 0; i < 4; i++) {
        loop_until(t, &quick[i].done, 1, WAIT_MS);
        assert_int_equal(quick[i].status, SP_PG_OK);
        assert_string_equal(quick[i].val[0][0], "2");
    }
    assert_int_equal(slow.done, 0); /* all four were answered before the sleep ended */
    loop_until(t, &slow.done, 1, WAIT_MS);
    assert_int_equal(slow.status, SP_PG_OK);
    sp_pool_free(pool);
}

/* Below the depth, a quick statement goes behind quick ones in flight rather than waking
 * another backend: once the pool knows SELECT ... pg_backend_pid() to be quick, two sent
 * together with three idle connections run on one backend, behind each other. */
static void test_pipeline_quick_behind_quick(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct many m = {0};
    struct many_one one[2];
    struct qres warm;
    char buf[2][16];

    t->depth = 4;
    pool = pool_open(t, t->url, 3, 100, 5000, 0);
    wait_idle(t, pool, 3);
    for (int i = 0; i < 16; i++) { /* one at a time: its typical time is learnt */
        const char *v[] = {"0"};

        ok(t, pool, "SELECT $1::int * 2, pg_backend_pid()", 1, v, &warm);
    }
    for (int i = 0; i < 2; i++) {
        const char *v[] = {buf[i]};

        one[i] = (struct many_one){&m, i};
        snprintf(buf[i], sizeof(buf[i]), "%d", i);
        assert_int_equal(
            sp_pool_query(pool, "SELECT $1::int * 2, pg_backend_pid()", 1, v, on_many, &one[i]), 0);
    }
    loop_until(t, &m.done, 2, WAIT_MS);
    assert_int_equal(m.ok, 2);
    assert_int_equal(m.npids, 1);
    sp_pool_free(pool);
}

/* Nothing goes behind a statement whose time is not known yet, nor behind one known to be
 * slow, while a connection is idle: the quick statements sent meanwhile are answered while
 * each of those still runs. */
static void test_pipeline_not_behind_unknown_or_slow(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct qres slow, quick, warm;

    t->depth = 4;
    pool = pool_open(t, t->url, 2, 100, 5000, 0);
    wait_idle(t, pool, 2);
    for (int i = 0; i < 8; i++)
        ok(t, pool, "SELECT 2", 0, NULL, &warm);
    for (int round = 0; round < 2; round++) { /* first unknown, then known to take 300 ms */
        memset(&slow, 0, sizeof(slow));
        memset(&quick, 0, sizeof(quick));
        assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.3)", 0, NULL, on_query, &slow), 0);
        assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_query, &quick), 0);
        loop_until(t, &quick.done, 1, WAIT_MS);
        assert_int_equal(quick.status, SP_PG_OK);
        assert_int_equal(slow.done, 0);
        loop_until(t, &slow.done, 1, WAIT_MS);
        assert_int_equal(slow.status, SP_PG_OK);
    }
    sp_pool_free(pool);
}

/* When no connection is idle, nothing goes behind a statement known to be long either: one
 * connection runs a sleep the pool knows to take 50 ms or more, the other a statement it does
 * not know yet; a quick statement goes behind the second rather than behind the long one (the
 * one that started last, which the least loaded rule alone would pick). */
static void test_pipeline_not_behind_long_when_busy(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct qres unknown, lasting, quick, warm;
    const char *short_sleep[] = {"0.05"}, *long_sleep[] = {"1"};

    t->depth = 4;
    pool = pool_open(t, t->url, 2, 100, 5000, 0);
    wait_idle(t, pool, 2);
    for (int i = 0; i < 4; i++) /* its typical time is learnt: 50 ms, long */
        ok(t, pool, "SELECT pg_sleep($1::float8)", 1, short_sleep, &warm);
    memset(&unknown, 0, sizeof(unknown));
    memset(&lasting, 0, sizeof(lasting));
    memset(&quick, 0, sizeof(quick));
    assert_int_equal(
        sp_pool_query(pool, "SELECT pg_sleep(0.3), 'not seen before'", 0, NULL, on_query, &unknown), 0);
    loop_for(t, 10);
    assert_int_equal(
        sp_pool_query(pool, "SELECT pg_sleep($1::float8)", 1, long_sleep, on_query, &lasting), 0);
    loop_for(t, 10); /* both on the wire; neither has stalled yet (4 typical statements) */
    assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_query, &quick), 0);
    loop_until(t, &quick.done, 1, WAIT_MS);
    assert_int_equal(quick.status, SP_PG_OK);
    assert_string_equal(quick.val[0][0], "2");
    assert_int_equal(unknown.done, 1);
    assert_int_equal(lasting.done, 0); /* answered while the long one still ran */
    loop_until(t, &lasting.done, 1, WAIT_MS);
    assert_int_equal(lasting.status, SP_PG_OK);
    sp_pool_free(pool);
}

/* Statements known to be long run on half the connections at most: with four connections,
 * three 300 ms sleeps the pool knows to be long run two at once, the third after one of them;
 * a quick statement queued behind the third does not wait for it. */
static void test_long_statements_take_half_the_pool(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct qres lasting[3], quick, warm;
    const char *short_sleep[] = {"0.05"}, *long_sleep[] = {"0.3"};
    uint64_t t0;

    t->depth = 4;
    pool = pool_open(t, t->url, 4, 100, 5000, 0);
    wait_idle(t, pool, 4);
    for (int i = 0; i < 4; i++) /* its typical time is learnt: 50 ms, long */
        ok(t, pool, "SELECT pg_sleep($1::float8)", 1, short_sleep, &warm);
    memset(lasting, 0, sizeof(lasting));
    memset(&quick, 0, sizeof(quick));
    t0 = sp_now_us();
    for (int i = 0; i < 3; i++)
        assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep($1::float8)", 1, long_sleep,
                                       on_query, &lasting[i]), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_query, &quick), 0);
    loop_until(t, &quick.done, 1, WAIT_MS);
    assert_int_equal(quick.status, SP_PG_OK);
    assert_int_equal(lasting[0].done + lasting[1].done + lasting[2].done, 0);
    for (int i = 0; i < 3; i++) {
        loop_until(t, &lasting[i].done, 1, WAIT_MS);
        assert_int_equal(lasting[i].status, SP_PG_OK);
    }
    /* the third started when one of the first two had ended, 300 ms in */
    assert_true(lasting[2].at_us - t0 >= 590000);
    sp_pool_free(pool);
}

/* A failing statement in the middle of a pipeline fails alone: a runtime error, a statement
 * that does not parse (its Prepare fails) sent twice while the first Prepare is in flight, and
 * the same new SQL twice (the second runs unnamed) all get their own answers. */
static void test_pipeline_error_isolated(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct qres q[8];
    int done = 0;
    static const char *const sql[8] = {
        "SELECT 1",          "SELECT 1/0",   "SELECT nosuch FROM pg_class",
        "SELECT nosuch FROM pg_class",     "SELECT $1::int + 100", "SELECT $1::int + 100",
        "SELECT 'x' || $1",  "SELECT 8",
    };
    static const char *const arg[8] = {NULL, NULL, NULL, NULL, "5", "6", "y", NULL};

    t->depth = 8;
    pool = pool_open(t, t->url, 1, 100, 5000, 0);
    wait_idle(t, pool, 1);
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 8; i++) {
        const char *v[] = {arg[i]};

        assert_int_equal(sp_pool_query(pool, sql[i], arg[i] ? 1 : 0, arg[i] ? v : NULL,
                                       on_query, &q[i]),
                         0);
    }
    for (uint64_t end = sp_now_us() + WAIT_MS * 1000u; sp_now_us() < end;) {
        done = 0;
        for (int i = 0; i < 8; i++)
            done += q[i].done;
        if (done == 8)
            break;
        loop_for(t, 5);
    }
    assert_int_equal(done, 8);
    assert_int_equal(q[0].status, SP_PG_OK);
    assert_string_equal(q[0].val[0][0], "1");
    assert_int_equal(q[1].status, SP_PG_ERROR);
    assert_string_equal(q[1].sqlstate, "22012");
    assert_int_equal(q[2].status, SP_PG_ERROR);
    assert_string_equal(q[2].sqlstate, "42703");
    assert_int_equal(q[3].status, SP_PG_ERROR);
    assert_string_equal(q[3].sqlstate, "42703");
    assert_string_equal(q[2].message, q[3].message);
    assert_int_equal(q[4].status, SP_PG_OK);
    assert_string_equal(q[4].val[0][0], "105");
    assert_int_equal(q[5].status, SP_PG_OK);
    assert_string_equal(q[5].val[0][0], "106");
    assert_int_equal(q[6].status, SP_PG_OK);
    assert_string_equal(q[6].val[0][0], "xy");
    assert_int_equal(q[7].status, SP_PG_OK);
    assert_string_equal(q[7].val[0][0], "8");
    /* the statement cache kept what was prepared, and only that */
    ok(t, pool, "SELECT $1::int + 100", 1, (const char *const[]){"7"}, &q[0]);
    assert_string_equal(q[0].val[0][0], "107");
    query(t, pool, "SELECT nosuch FROM pg_class", 0, NULL, &q[0]);
    assert_string_equal(q[0].sqlstate, "42703");
    sp_pool_free(pool);
}

/* The backend dies with four statements in flight: each gets its 503 answer, and the pool
 * reconnects by itself. */
static void test_pipeline_lost(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool, *killer;
    struct counts c = {0};
    struct qres q;
    char pids[80];

    t->depth = 4;
    pool = pool_open(t, t->url, 1, 100, 5000, 0);
    t->depth = 1;
    killer = pool_open(t, t->url, 1, 10, 5000, 0);
    wait_idle(t, pool, 1);
    ok(t, pool, "SELECT pg_backend_pid()", 0, NULL, &q);
    snprintf(pids, sizeof(pids), "{%s}", q.val[0][0]);
    assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(30)", 0, NULL, on_count, &c), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_count, &c), 0);
    loop_for(t, 50);
    struct sp_pool_stats st;
    sp_pool_stats(pool, &st);
    assert_int_equal(st.inflight, 4);
    terminate(t, killer, pids);
    loop_until(t, &c.done, 4, WAIT_MS);
    assert_int_equal(c.done, 4);
    assert_int_equal(c.ok, 0);
    assert_int_equal(c.other, 4); /* SP_PG_UNAVAILABLE, each */
    wait_idle(t, pool, 1);
    ok(t, pool, "SELECT 1", 0, NULL, &q);
    sp_pool_free(killer);
    sp_pool_free(pool);
}

/* Transactions never share: an acquire waits for a connection with nothing in flight, and
 * queries after it wait their turn (FIFO); an unpinned BEGIN gets nothing sent behind it, so a
 * later INSERT is not swallowed by the rollback that follows. */
static void test_pipeline_transactions_alone(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct counts c = {0}, after = {0};
    struct acq a = {0};
    struct sp_pool_stats st;
    struct qres q;

    t->depth = 4;
    pool = pool_open(t, t->url, 1, 100, 5000, 0);
    wait_idle(t, pool, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_count, &c), 0);
    assert_int_equal(sp_pool_acquire(pool, on_acquire, &a), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_count, &after), 0);
    loop_until(t, &a.done, 1, WAIT_MS);
    assert_int_equal(a.status, SP_PG_OK);
    assert_int_equal(c.ok, 3); /* all three were done before the pin */
    assert_int_equal(after.done, 0);
    sp_pool_stats(pool, &st);
    assert_int_equal(st.inflight, 0);
    query_on(t, a.conn, "BEGIN", 0, NULL, &q);
    query_on(t, a.conn, "SELECT txid_current()", 0, NULL, &q);
    assert_int_equal(q.status, SP_PG_OK);
    loop_for(t, 30);
    assert_int_equal(after.done, 0); /* still waiting: the pin has the only connection */
    sp_pool_release(a.conn);
    loop_until(t, &after.done, 1, WAIT_MS);
    assert_int_equal(after.ok, 1);

    ok(t, pool, "CREATE TABLE IF NOT EXISTS pgpool_test_pipe (n int)", 0, NULL, &q);
    ok(t, pool, "TRUNCATE pgpool_test_pipe", 0, NULL, &q);
    struct counts b = {0}, ins = {0};
    assert_int_equal(sp_pool_query(pool, "  begin", 0, NULL, on_count, &b), 0);
    assert_int_equal(
        sp_pool_query(pool, "INSERT INTO pgpool_test_pipe VALUES (1)", 0, NULL, on_count, &ins), 0);
    loop_until(t, &ins.done, 1, WAIT_MS);
    assert_int_equal(b.ok, 1);
    assert_int_equal(ins.ok, 1);
    ok(t, pool, "SELECT count(*) FROM pgpool_test_pipe", 0, NULL, &q);
    assert_string_equal(q.val[0][0], "1");
    ok(t, pool, "DROP TABLE pgpool_test_pipe", 0, NULL, &q);
    sp_pool_free(pool);
}

/* A caller gone while its statement is mid-pipeline: nothing waiting of it runs, what is on
 * the wire still calls back (the caller frees itself then), the others are undisturbed. */
static void test_pipeline_cancel(void **state)
{
    struct t *t = *state;
    struct sp_pool *pool;
    struct counts first = {0}, gone = {0}, last = {0};

    t->depth = 2;
    pool = pool_open(t, t->url, 1, 100, 5000, 0);
    wait_idle(t, pool, 1);
    assert_int_equal(sp_pool_query(pool, "SELECT pg_sleep(0.1)", 0, NULL, on_count, &first), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_count, &gone), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 1", 0, NULL, on_count, &gone), 0);
    assert_int_equal(sp_pool_query(pool, "SELECT 2", 0, NULL, on_count, &last), 0);
    loop_for(t, 20); /* two on the wire, two waiting */
    assert_int_equal(sp_pool_cancel(pool, &gone), 1);
    loop_until(t, &last.done, 1, WAIT_MS);
    assert_int_equal(first.ok, 1);
    assert_int_equal(gone.ok, 1); /* the one on the wire */
    assert_int_equal(gone.done, 1);
    assert_int_equal(last.ok, 1);
    sp_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params_copied_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_violation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepared_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_silent_long_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_many_fail_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_after_terminate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_mid_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_param_and_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_fails_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_many_on_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_not_behind_stalled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_quick_behind_quick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_not_behind_unknown_or_slow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_not_behind_long_when_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_statements_take_half_the_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_error_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_transactions_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_cancel, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("pgpool", tests, NULL, NULL);

    libevent_global_shutdown();
    return failed;
}
