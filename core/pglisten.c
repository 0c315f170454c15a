/* pglisten.c: the LISTEN connection. A small state machine on PQsocket():
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> SUBSCRIBING --LISTEN done--> UP
 * and back to DOWN (timer armed with backoff) whenever anything fails. */
#include "pglisten.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LISTEN_BACKOFF_MIN_MS 100
#define LISTEN_BACKOFF_MAX_MS 5000
#define LISTEN_APP_NAME       "spacer-listen"

enum listen_state { L_DOWN, L_CONNECTING, L_SUBSCRIBING, L_UP };

struct sp_listen {
    struct event_base *base;
    struct sp_listen_conf conf; /* conninfo and channel are our copies */
    PGconn *pg;
    enum listen_state state;
    struct event *io, *timer;
    int backoff_ms;
};

static void listen_connect(struct sp_listen *l);
static void listen_step(struct sp_listen *l);
static void listen_fail(struct sp_listen *l);
static void listen_io_cb(evutil_socket_t fd, short what, void *arg);
static void listen_timer_cb(evutil_socket_t fd, short what, void *arg);

static void arm_timer(struct sp_listen *l, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(l->timer, &tv);
}

static int watch(struct sp_listen *l, short what)
{
    if (l->io != NULL)
        event_free(l->io);
    l->io = event_new(l->base, PQsocket(l->pg), what, listen_io_cb, l);
    return l->io != NULL && event_add(l->io, NULL) == 0 ? 0 : -1;
}

struct sp_listen *
sp_listen_new(struct event_base *base, const struct sp_listen_conf *conf, sp_err *err)
{
    struct sp_listen *l = calloc(1, sizeof(*l));
    PQconninfoOption *opts;
    char *msg = NULL;

    if (l == NULL) {
        sp_err_set(err, "out of memory");
        return NULL;
    }
    if ((opts = PQconninfoParse(conf->conninfo, &msg)) == NULL) {
        sp_err_set(err, "database url: %s", msg ? msg : "out of memory");
        PQfreemem(msg);
        free(l);
        return NULL;
    }
    PQconninfoFree(opts);
    l->base = base;
    l->conf = *conf;
    l->conf.conninfo = strdup(conf->conninfo);
    l->conf.channel = strdup(conf->channel);
    l->timer = evtimer_new(base, listen_timer_cb, l);
    if (l->conf.conninfo == NULL || l->conf.channel == NULL || l->timer == NULL) {
        sp_err_set(err, "out of memory");
        sp_listen_free(l);
        return NULL;
    }
    l->backoff_ms = LISTEN_BACKOFF_MIN_MS;
    listen_connect(l);
    return l;
}

void sp_listen_free(struct sp_listen *l)
{
    if (l == NULL)
        return;
    if (l->io)
        event_free(l->io);
    if (l->timer)
        event_free(l->timer);
    if (l->pg)
        PQfinish(l->pg);
    free((char *)l->conf.conninfo);
    free((char *)l->conf.channel);
    free(l);
}

int sp_listen_up(const struct sp_listen *l)
{
    return l != NULL && l->state == L_UP;
}

static void listen_connect(struct sp_listen *l)
{
    const char *kw[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {l->conf.conninfo, LISTEN_APP_NAME, NULL};

    l->pg = PQconnectStartParams(kw, vals, 1);
    if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD || PQsetnonblocking(l->pg, 1) != 0) {
        listen_fail(l);
        return;
    }
    l->state = L_CONNECTING;
    arm_timer(l, l->conf.connect_timeout_ms > 0 ? l->conf.connect_timeout_ms : 5000);
    listen_step(l);
}

/* Drives the connect, then the LISTEN, then reads notifications. */
static void listen_step(struct sp_listen *l)
{
    PGresult *res;
    PGnotify *n;
    char sql[200];

    if (l->state == L_CONNECTING) {
        switch (PQconnectPoll(l->pg)) {
        case PGRES_POLLING_READING:
            if (watch(l, EV_READ) != 0)
                listen_fail(l);
            return;
        case PGRES_POLLING_WRITING:
            if (watch(l, EV_WRITE) != 0)
                listen_fail(l);
            return;
        case PGRES_POLLING_OK:
            break;
        default:
            listen_fail(l);
            return;
        }
        snprintf(sql, sizeof(sql), "LISTEN %s", l->conf.channel);
        if (!PQsendQuery(l->pg, sql) || PQflush(l->pg) != 0 || watch(l, EV_READ | EV_PERSIST)) {
            listen_fail(l); /* a few bytes on a fresh socket: PQflush does not come back 1 */
            return;
        }
        l->state = L_SUBSCRIBING;
        return;
    }
    if (!PQconsumeInput(l->pg) || PQstatus(l->pg) == CONNECTION_BAD) {
        listen_fail(l);
        return;
    }
    while (l->state == L_SUBSCRIBING && !PQisBusy(l->pg)) {
        if ((res = PQgetResult(l->pg)) == NULL) {
            evtimer_del(l->timer);
            l->state = L_UP;
            l->backoff_ms = LISTEN_BACKOFF_MIN_MS;
            if (l->conf.on_subscribed)
                l->conf.on_subscribed(l->conf.arg);
            break;
        }
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
            listen_fail(l);
            return;
        }
    }
    while ((n = PQnotifies(l->pg)) != NULL) {
        if (l->state == L_UP && l->conf.on_notify)
            l->conf.on_notify(l->conf.arg, n->extra);
        PQfreemem(n);
    }
}

static void listen_fail(struct sp_listen *l)
{
    int was_up = l->state == L_UP;

    if (l->io) {
        event_free(l->io);
        l->io = NULL;
    }
    if (l->pg) {
        PQfinish(l->pg);
        l->pg = NULL;
    }
    l->state = L_DOWN;
    arm_timer(l, l->backoff_ms);
    l->backoff_ms =
        l->backoff_ms * 2 < LISTEN_BACKOFF_MAX_MS ? l->backoff_ms * 2 : LISTEN_BACKOFF_MAX_MS;
    if (was_up && l->conf.on_lost)
        l->conf.on_lost(l->conf.arg);
}

static void listen_io_cb(evutil_socket_t fd, short what, void *arg)
{
    SP_UNUSED(fd);
    SP_UNUSED(what);
    listen_step(arg);
}

static void listen_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sp_listen *l = arg;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (l->state == L_DOWN)
        listen_connect(l);
    else if (l->state != L_UP)
        listen_fail(l); /* connect or LISTEN took too long */
}
