/* pglisten.h: one PostgreSQL connection per worker that LISTENs on a channel and hands each
 * notification's payload to a callback. Reconnects by itself (100 ms, doubling up to 5 s);
 * since notifications sent while it was down are lost for good, every (re)subscription is
 * reported, for the caller to forget what the notifications would have invalidated.
 * Knows libpq and libevent, never what a payload means. Nothing here blocks (but libpq's
 * host name lookup: give an address or a socket directory, as for the pool). */
#ifndef SP_PGLISTEN_H
#define SP_PGLISTEN_H

#include "sp.h"

struct event_base;
struct sp_listen;

struct sp_listen_conf {
    const char *conninfo; /* libpq connection string or URI */
    const char *channel;  /* an SQL identifier, as in LISTEN channel */
    int connect_timeout_ms;
    void (*on_notify)(void *arg, const char *payload);
    void (*on_subscribed)(void *arg); /* LISTEN is in effect (again) */
    void (*on_lost)(void *arg);       /* the connection is gone; notifications may be missed */
    void *arg;
};

/* Starts connecting at once. On success the listener is the caller's, to free with
 * sp_listen_free(); a malformed conninfo fails here. */
struct sp_listen *
sp_listen_new(struct event_base *base, const struct sp_listen_conf *conf, sp_err *err);
void sp_listen_free(struct sp_listen *l); /* NULL is fine */

/* 1 while LISTEN is in effect on a live connection. */
int sp_listen_up(const struct sp_listen *l);

#endif
