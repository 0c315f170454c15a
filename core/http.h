/* http.h: HTTP/1.1 connections on a libevent loop. Accepts on a listening socket, reads,
 * parses with http-parser, refuses ambiguous framing (RFC 9112 6.3), answers its own errors in
 * JSON, writes responses with writev, keeps connections alive and pipelined requests in order.
 * Knows bytes and framing, never routes or Lua: a complete request goes up through
 * sp_http_cbs, and the answer comes down through sp_http_respond(). */
#ifndef SP_HTTP_H
#define SP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "sp.h"

struct event_base;
struct sp_http;
struct sp_http_conn;

struct sp_http_limits {
    size_t max_header;       /* request line + headers (bytes): 414 for the line, 431 */
    size_t max_body;         /* 413 */
    int header_timeout_ms;   /* request line + headers: 408 */
    int read_timeout_ms;     /* between two reads of a body, between two writes: 408 / close */
    int keepalive_timeout_ms;
    int keepalive_requests;  /* requests per connection, then Connection: close */
    int max_idle;            /* idle keep-alive connections kept; the oldest closes beyond */
    int max_connections;     /* beyond: 503 and close, with a log line */
};

struct sp_http_header {
    const char *name, *value; /* NUL-terminated; name as sent */
    size_t name_len, value_len;
};

/* One request: parsed, its body read. Valid until its response is sent or it is cancelled. */
struct sp_http_req {
    const char *method;  /* "GET", "POST", ... */
    const char *target;  /* as sent: "/path?query" */
    const char *path;    /* target up to '?' or '#' (not decoded) */
    const char *query;   /* after '?', up to '#'; NULL when absent */
    struct sp_http_header *headers;
    int nheaders;
    const char *body;    /* NUL-terminated for convenience; body_len bytes */
    size_t body_len;
    const char *peer;    /* the client's address, "" when unknown */
    int http_minor;
    void *data;          /* the upper layer's (its request) */
};

struct sp_http_cbs {
    /* A complete request: answer it (now or later) with sp_http_respond(). */
    void (*on_request)(void *ctx, struct sp_http_conn *c, struct sp_http_req *r);
    /* The client went away before the answer: r->data is to be forgotten; never answer it. */
    void (*on_cancel)(void *ctx, struct sp_http_req *r);
    /* An error this layer answered by itself (status >= 400), for logs and metrics.
     * method/target may be "" when the request line was not read. */
    void (*on_refused)(void *ctx, int status, const char *id, const char *method,
                       const char *target);
    /* Writes a new request id (NUL-terminated) for an error this layer answers. */
    void (*make_id)(void *ctx, char *buf, size_t cap);
    /* After sp_http_drain(): the last connection has closed. */
    void (*on_drained)(void *ctx);
};

/* listen_fd < 0: no listener (feed connections with sp_http_conn_feed(), as the fuzzer does). */
struct sp_http *sp_http_new(struct event_base *base, int listen_fd,
                            const struct sp_http_limits *lim, const struct sp_http_cbs *cbs,
                            void *ctx, sp_err *err);
/* Closes every connection (requests in flight are cancelled first). NULL is fine. */
void sp_http_free(struct sp_http *h);
/* Stops accepting; idle connections close, busy ones close after their answer. */
void sp_http_drain(struct sp_http *h);
int sp_http_connections(const struct sp_http *h);
/* When workers share one listener: counts[self] is kept at this worker's open connections
 * (-1 once draining), and while another worker's counts[i] (>= 0) is lower, this one leaves
 * new connections to it for a moment (see accept_some() in http.c). counts is shared memory
 * of n ints; n < 2 or counts NULL: no balancing. 0, or -1 when out of memory. */
int sp_http_balance(struct sp_http *h, int *counts, int n, int self);

/* A response's headers, built by the upper layer: "Name: value\r\n" lines. */
struct sp_http_out {
    struct sp_buf head;
};
void sp_http_out_add(struct sp_http_out *o, const char *name, const char *value);
/* 1 when a header of this name was added (case-insensitive). */
int sp_http_out_has(const struct sp_http_out *o, const char *name);
void sp_http_out_remove(struct sp_http_out *o, const char *name);

/* Answers r: status line, out's headers, Date, Content-Length, Connection; the body (not for
 * HEAD, 204, 304). Copies what it cannot write at once; out is left empty. */
void sp_http_respond(struct sp_http_conn *c, struct sp_http_req *r, int status,
                     struct sp_http_out *out, const char *body, size_t len);

/* As sp_http_respond(), but the body is not copied: it must stay as it is until release(arg)
 * is called, once: when the body is written (at once when the socket takes it all, or it is
 * not sent: HEAD, 304), or when the connection closes first. */
void sp_http_respond_ref(struct sp_http_conn *c, struct sp_http_req *r, int status,
                         struct sp_http_out *out, const char *body, size_t len,
                         void (*release)(void *arg), void *arg);

/* The request header of that name (case-insensitive), first one; NULL when absent. */
const char *sp_http_req_header(const struct sp_http_req *r, const char *name);

/* Fuzzing and tests: a connection without a socket; bytes are parsed as if read, responses
 * are discarded. Returns the connection, to close with sp_http_conn_close(). */
struct sp_http_conn *sp_http_conn_fake(struct sp_http *h);
/* 0 while the connection lives, -1 once it is closed (it is then freed). */
int sp_http_conn_feed(struct sp_http_conn *c, const char *data, size_t len);
void sp_http_conn_close(struct sp_http_conn *c);

const char *sp_http_reason(int status);

#endif
