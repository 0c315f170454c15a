/* http.c: HTTP/1.1 connections of our own on libevent's loop, parsing by http-parser.
 *
 * One connection reads into a buffer and parses one request at a time: a complete request goes
 * up (on_request) and nothing more is parsed until its answer is queued, so pipelined requests
 * are answered in order and a slow handler holds back only its own connection. The read event
 * stays armed for the connection's whole life (a closed client is noticed at once and its
 * request cancelled); the write event is added only when the socket's buffer is full. Errors
 * of this layer are JSON, written before a lingering close so the client reads them.
 *
 * The parser is http-parser 2.9 as Debian 12 packages it (libhttp-parser-dev, security
 * updates from the distribution; llhttp, its successor, is not packaged there and would have
 * to be vendored). It already refuses two Content-Length headers, Content-Length beside
 * Transfer-Encoding and bad chunk sizes; it accepts whitespace before a colon, obs-fold,
 * "gzip, chunked", "chunked, chunked" and chunked in HTTP/1.0, which the callbacks below
 * refuse. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "log.h"

#define READ_CHUNK     16384
#define MAX_HEADERS    100
#define LINGER_MS      2000  /* after an error or Connection: close, wait this long for EOF */
#define ACCEPT_BATCH   64
#define DEFER_US       2000 /* a worker ahead in connections leaves a new one to the others */
#define INPUT_HOLD     65536 /* unparsed bytes kept while a request runs; then reading pauses */
#define SPARE_BUFS     32    /* read buffers of idle connections kept for the next reads */

enum conn_state {
    C_IDLE,   /* between requests (or before the first): no byte of the next one yet */
    C_HEAD,   /* reading the request line and headers */
    C_BODY,   /* reading the body */
    C_BUSY,   /* the request went up; waiting for its answer */
    C_LINGER, /* answered an error or a close: draining the client's bytes until EOF */
};

struct hdr_off {
    size_t n, nl, v, vl;
};

struct sp_http_conn {
    struct sp_http *h;
    int fd;    /* -1: a fake connection (fuzzing) */
    struct event *rev, *wev, *timer;
    TAILQ_ENTRY(sp_http_conn) all;
    TAILQ_ENTRY(sp_http_conn) idle;
    int in_idle;
    enum conn_state state;
    http_parser parser;
    struct sp_buf in;
    size_t in_off;
    struct sp_buf out;
    size_t out_off;
    struct sp_buf head; /* the response head being written (reused) */
    /* A body written without a copy (sp_http_respond_ref), after out: its unwritten rest,
     * held until it is written or the connection closes, then released. */
    const char *held;
    size_t held_len;
    void (*held_release)(void *arg);
    void *held_arg;
    int reading; /* rev is added */
    int writing; /* wev is added */

    /* the request being read */
    struct sp_buf text; /* target\0 name\0 value\0 ... path\0 query\0 */
    size_t url_len;
    struct hdr_off *hoff;
    int nh, hcap;
    int last_cb; /* 0 none, 1 url, 2 field, 3 value */
    const char *exec_start, *exec_end;
    int value_at_eol;        /* the last value fragment ended at a line's end */
    int value_at_buf_end;    /* ... or at the end of the bytes parsed */
    size_t head_bytes;
    struct sp_buf body;
    struct sp_http_header *headers;
    int hdrs_cap;
    struct sp_http_req req;
    int keep_alive;
    int nreqs;
    int refuse_status;
    const char *refuse_code, *refuse_msg;

    int head_timed; /* the header timer runs for this request */
    int64_t due_ms;   /* the timeout's deadline (CLOCK_MONOTONIC ms), 0: none */
    int64_t armed_ms; /* when the libevent timer fires (about), 0: not pending */
    int in_process;
    int eof;
    int closing; /* close (lingering) once the output is written */
    int dead;    /* closed inside process(): freed by it */
    char peer[64];
};

TAILQ_HEAD(conn_list, sp_http_conn);

struct sp_http {
    struct event_base *base;
    struct event *accept_ev;
    int listen_fd;
    struct sp_http_limits lim;
    struct sp_http_cbs cbs;
    void *ctx;
    struct conn_list conns, idle;
    int nconns, nidle;
    int draining;
    int at_cap; /* the connection cap was reached (logged once until it clears) */
    const struct timeval *tv_header, *tv_read, *tv_keepalive, *tv_linger;
    struct timeval tv_header_s, tv_read_s, tv_keepalive_s, tv_linger_s;
    time_t date_at;
    char date[64];
    struct sp_buf spare[SPARE_BUFS]; /* read buffers between two requests, for any connection */
    int nspare;
    int *bal_counts;          /* sp_http_balance(): every worker's open connections, shared */
    int bal_n, bal_self;
    struct event *defer_ev;   /* the accept watch comes back after DEFER_US */
};

static void conn_close(struct sp_http_conn *c);
static void publish_count(struct sp_http *h);
static void conn_process(struct sp_http_conn *c);
static void conn_refuse(struct sp_http_conn *c, int status, const char *code, const char *msg);
static void conn_flush(struct sp_http_conn *c);

/* ---- small things ---------------------------------------------------------------------- */

const char *sp_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

static void ms_tv(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static const char *http_date(struct sp_http *h)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now != h->date_at) {
        gmtime_r(&now, &tm);
        strftime(h->date, sizeof(h->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        h->date_at = now;
    }
    return h->date;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t tv_ms(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000 + tv->tv_usec / 1000;
}

/* A connection's timeout is a deadline (due_ms) kept by us; libevent's timer is moved only
 * when it would fire too late. A keep-alive request clears its idle timeout and sets it again
 * each time: these stay two stores, the timer left running fires early, now and then, and is
 * set again for what is left (an event_del and an event_add per request cost more than the
 * rest of the timeouts' work). */
static void timer_set(struct sp_http_conn *c, const struct timeval *tv)
{
    const struct timeval *real = tv;
    struct sp_http *h = c->h;

    if (c->timer == NULL)
        return;
    /* the common timeouts' timevals are magic: their lengths are in the _s copies */
    if (tv == h->tv_header)
        real = &h->tv_header_s;
    else if (tv == h->tv_read)
        real = &h->tv_read_s;
    else if (tv == h->tv_keepalive)
        real = &h->tv_keepalive_s;
    else if (tv == h->tv_linger)
        real = &h->tv_linger_s;
    c->due_ms = mono_ms() + tv_ms(real);
    if (c->armed_ms != 0 && c->armed_ms <= c->due_ms)
        return; /* it fires first and sets itself again for the rest */
    event_add(c->timer, tv);
    c->armed_ms = c->due_ms;
}

static void timer_clear(struct sp_http_conn *c)
{
    c->due_ms = 0; /* a running timer finds nothing due and stops */
}

static void in_release(struct sp_http_conn *c)
{
    struct sp_http *h = c->h;

    if (c->in.data != NULL && h->nspare < SPARE_BUFS && c->in.cap <= 2 * READ_CHUNK + 1)
        h->spare[h->nspare++] = c->in;
    else
        sp_buf_free(&c->in);
    c->in = (struct sp_buf){0};
}

static void in_take(struct sp_http_conn *c)
{
    struct sp_http *h = c->h;

    if (c->in.data == NULL && h->nspare > 0) {
        c->in = h->spare[--h->nspare];
        c->in.len = 0;
    }
}

static void idle_enter(struct sp_http_conn *c)
{
    struct sp_http *h = c->h;

    if (c->in_idle)
        return;
    if (c->in.len == 0 && c->in.data != NULL) {
        /* An idle connection keeps no read buffer: ten thousand of them would hold 320 MB
         * of address space. The worker keeps a few for the next reads of any connection
         * (malloc and free of 32 KB per keep-alive request cost more than the request). */
        in_release(c);
        c->in_off = 0;
    }
    TAILQ_INSERT_TAIL(&h->idle, c, idle);
    c->in_idle = 1;
    h->nidle++;
    timer_set(c, c->nreqs == 0 ? h->tv_header : h->tv_keepalive);
    while (h->nidle > h->lim.max_idle && h->lim.max_idle > 0) {
        struct sp_http_conn *old = TAILQ_FIRST(&h->idle);
        conn_close(old);
    }
}

static void idle_leave(struct sp_http_conn *c)
{
    if (!c->in_idle)
        return;
    TAILQ_REMOVE(&c->h->idle, c, idle);
    c->in_idle = 0;
    timer_clear(c);
    c->h->nidle--;
}

/* ---- response headers ------------------------------------------------------------------- */

void sp_http_out_add(struct sp_http_out *o, const char *name, const char *value)
{
    sp_buf_adds(&o->head, name);
    sp_buf_add(&o->head, ": ", 2);
    /* A value never breaks the header block: a CR or LF becomes a space. */
    for (const char *p = value;;) {
        size_t n = strcspn(p, "\r\n");
        sp_buf_add(&o->head, p, n);
        if (p[n] == '\0')
            break;
        sp_buf_addc(&o->head, ' ');
        p += n + 1;
    }
    sp_buf_add(&o->head, "\r\n", 2);
}

/* The line of a header of that name: its offset, or -1. */
static long out_find(const struct sp_http_out *o, const char *name)
{
    size_t n = strlen(name), i = 0;

    while (i < o->head.len) {
        const char *line = o->head.data + i;
        const char *end = memchr(line, '\n', o->head.len - i);
        if (end == NULL)
            break;
        if ((size_t)(end - line) > n && line[n] == ':' && strncasecmp(line, name, n) == 0)
            return (long)i;
        i = (size_t)(end - o->head.data) + 1;
    }
    return -1;
}

int sp_http_out_has(const struct sp_http_out *o, const char *name)
{
    return out_find(o, name) >= 0;
}

void sp_http_out_remove(struct sp_http_out *o, const char *name)
{
    long at;

    while ((at = out_find(o, name)) >= 0) {
        char *line = o->head.data + at;
        char *end = memchr(line, '\n', o->head.len - (size_t)at);
        size_t n = (size_t)(end - line) + 1;
        memmove(line, line + n, o->head.len - (size_t)at - n);
        o->head.len -= n;
    }
}

const char *sp_http_req_header(const struct sp_http_req *r, const char *name)
{
    int first = name[0] | 0x20; /* a letter's lower case: a quick no before strcasecmp */

    for (int i = 0; i < r->nheaders; i++)
        if ((r->headers[i].name[0] | 0x20) == first && strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void want_write(struct sp_http_conn *c, int on)
{
    if (c->fd < 0 || c->writing == on)
        return;
    c->writing = on;
    if (on)
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
}

static void want_read(struct sp_http_conn *c, int on)
{
    if (c->fd < 0 || c->reading == on)
        return;
    c->reading = on;
    if (on)
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
}

/* Output not yet written: in out, or a held body. */
static int out_pending(const struct sp_http_conn *c)
{
    return c->out.len > c->out_off || c->held_release != NULL;
}

/* Lets the held body go (written, or the connection ends). */
static void held_drop(struct sp_http_conn *c)
{
    void (*release)(void *arg) = c->held_release;

    if (release == NULL)
        return;
    c->held_release = NULL;
    c->held = NULL;
    c->held_len = 0;
    release(c->held_arg);
}

/* Writes iov now as far as the socket takes it; keeps the rest: copies it, but for the last
 * iov when release is given: that one is held, without a copy, until written, then
 * release(arg) is called (at once when nothing of it is left). 0, or -1 when the peer is gone
 * (release called). */
static int conn_writev_held(struct sp_http_conn *c, struct iovec *iov, int n,
                            void (*release)(void *arg), void *arg)
{
    ssize_t w = 0;
    size_t total = 0;
    int behind;

    if (c->held_release != NULL) { /* more output behind a held body: it is copied, in order */
        sp_buf_add(&c->out, c->held, c->held_len);
        held_drop(c);
    }
    behind = c->out.len > c->out_off;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (behind || c->fd < 0) {
        w = c->fd < 0 ? (ssize_t)total : 0; /* behind earlier output, or nowhere to go */
    } else {
        do
            w = writev(c->fd, iov, n);
        while (w < 0 && errno == EINTR);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                if (release != NULL)
                    release(arg);
                return -1;
            }
            w = 0;
        }
    }
    for (int i = 0; i < n; i++) {
        size_t skip = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
        const char *rest = (const char *)iov[i].iov_base + skip;
        w -= (ssize_t)skip;
        if (iov[i].iov_len == skip)
            continue;
        if (release != NULL && i == n - 1 && !behind) {
            c->held = rest;
            c->held_len = iov[i].iov_len - skip;
            c->held_release = release;
            c->held_arg = arg;
            release = NULL;
        } else {
            sp_buf_add(&c->out, rest, iov[i].iov_len - skip);
        }
    }
    if (release != NULL)
        release(arg); /* written, or copied */
    if (out_pending(c)) {
        want_write(c, 1);
        timer_set(c, c->h->tv_read);
    }
    return 0;
}

static int conn_writev(struct sp_http_conn *c, struct iovec *iov, int n)
{
    return conn_writev_held(c, iov, n, NULL, NULL);
}

/* The output is all written: what the connection does next. */
static void after_output(struct sp_http_conn *c)
{
    if (c->closing) {
        if (c->fd < 0 || c->eof) {
            conn_close(c);
            return;
        }
        if (c->state == C_LINGER)
            return;
        c->state = C_LINGER;
        shutdown(c->fd, SHUT_WR);
        want_read(c, 1);
        timer_set(c, c->h->tv_linger);
        return;
    }
    if (c->state == C_IDLE)
        conn_process(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct sp_http_conn *c = arg;
    struct iovec iov[2];
    size_t from_out;
    int n = 0;
    ssize_t w;

    SP_UNUSED(what);
    if (c->out.len > c->out_off)
        iov[n++] = (struct iovec){c->out.data + c->out_off, c->out.len - c->out_off};
    if (c->held_release != NULL)
        iov[n++] = (struct iovec){(void *)c->held, c->held_len};
    do
        w = writev(fd, iov, n);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        conn_close(c);
        return;
    }
    from_out = (size_t)w < c->out.len - c->out_off ? (size_t)w : c->out.len - c->out_off;
    c->out_off += from_out;
    if (c->out_off == c->out.len)
        c->out.len = c->out_off = 0;
    if (c->held_release != NULL) {
        c->held += (size_t)w - from_out;
        c->held_len -= (size_t)w - from_out;
        if (c->held_len == 0)
            held_drop(c);
    }
    if (out_pending(c)) {
        timer_set(c, c->h->tv_read);
        return;
    }
    want_write(c, 0);
    timer_clear(c);
    after_output(c);
}

static void conn_flush(struct sp_http_conn *c)
{
    if (out_pending(c))
        return; /* on_write finishes */
    c->out.len = c->out_off = 0;
    after_output(c);
}

static void reset_request(struct sp_http_conn *c)
{
    c->text.len = 0;
    c->url_len = 0;
    c->nh = 0;
    c->last_cb = 0;
    c->value_at_eol = c->value_at_buf_end = 0;
    c->head_bytes = 0;
    c->body.len = 0;
    c->refuse_status = 0;
    memset(&c->req, 0, sizeof(c->req));
    if (c->body.cap > 1 << 20) { /* a big body's memory does not stay with an idle connection */
        sp_buf_free(&c->body);
        c->body = (struct sp_buf){0};
    }
}

/* "HTTP/1.1 200 OK\r\n" */
static void head_status(struct sp_buf *head, int status)
{
    const char *reason;
    char code[4];

    if (status < 100 || status > 999)
        status = 500;
    reason = sp_http_reason(status);
    code[0] = (char)('0' + status / 100);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    code[3] = ' ';
    sp_buf_add(head, "HTTP/1.1 ", 9);
    sp_buf_add(head, code, 4);
    sp_buf_adds(head, reason);
    sp_buf_add(head, "\r\n", 2);
}

void sp_http_respond(struct sp_http_conn *c, struct sp_http_req *r, int status,
                     struct sp_http_out *out, const char *body, size_t len)
{
    sp_http_respond_ref(c, r, status, out, body, len, NULL, NULL);
}

void sp_http_respond_ref(struct sp_http_conn *c, struct sp_http_req *r, int status,
                         struct sp_http_out *out, const char *body, size_t len,
                         void (*release)(void *arg), void *arg)
{
    struct sp_http *h = c->h;
    struct sp_buf *head = &c->head;
    struct iovec iov[2];
    int n = 1, no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int keep = c->keep_alive && !h->draining && !c->closing &&
               (h->lim.keepalive_requests <= 0 || c->nreqs < h->lim.keepalive_requests);
    int rc;

    SP_UNUSED(r);
    head->len = 0;
    sp_buf_reserve(head, 256 + (out ? out->head.len : 0));
    head_status(head, status);
    sp_buf_add(head, "Date: ", 6);
    sp_buf_adds(head, http_date(h));
    sp_buf_add(head, "\r\n", 2);
    if (out != NULL && out->head.len > 0)
        sp_buf_add(head, out->head.data, out->head.len);
    if (!no_body) {
        char num[24];
        size_t n = sizeof(num), v = len;
        do
            num[--n] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        sp_buf_add(head, "Content-Length: ", 16);
        sp_buf_add(head, num + n, sizeof(num) - n);
        sp_buf_add(head, "\r\n", 2);
    }
    if (!keep)
        sp_buf_adds(head, "Connection: close\r\n");
    else if (c->req.http_minor == 0)
        sp_buf_adds(head, "Connection: keep-alive\r\n");
    sp_buf_add(head, "\r\n", 2);
    if (out != NULL)
        out->head.len = 0;
    if (no_body || c->parser.method == HTTP_HEAD)
        len = 0;
    iov[0].iov_base = head->data;
    iov[0].iov_len = head->len;
    if (len > 0) {
        iov[1].iov_base = (void *)body;
        iov[1].iov_len = len;
        n = 2;
    }
    if (!keep)
        c->closing = 1;
    c->state = C_IDLE;
    if (release != NULL && n == 1) {
        release(arg); /* no body to hold (HEAD, 304, empty) */
        release = NULL;
    }
    rc = conn_writev_held(c, iov, n, release, arg); /* before the reset: body may be the
                                                      * request's own */
    reset_request(c);
    if (head->cap > 65536) {
        sp_buf_free(head);
        *head = (struct sp_buf){0};
    }
    if (rc != 0) {
        conn_close(c);
        return;
    }
    if (!c->in_process)
        conn_flush(c);
}

/* An error this layer answers by itself: JSON, then the connection closes. */
static void conn_refuse(struct sp_http_conn *c, int status, const char *code, const char *msg)
{
    struct sp_http *h = c->h;
    struct sp_http_out out = {0};
    struct sp_buf b = {0};
    char id[72] = "";

    if (h->cbs.make_id != NULL)
        h->cbs.make_id(h->ctx, id, sizeof(id));
    sp_buf_adds(&b, "{\"error\":");
    sp_json_add_string(&b, msg, strlen(msg));
    sp_buf_adds(&b, ",\"code\":");
    sp_json_add_string(&b, code, strlen(code));
    if (status >= 500) {
        sp_buf_adds(&b, ",\"request_id\":");
        sp_json_add_string(&b, id, strlen(id));
    }
    sp_buf_addc(&b, '}');
    sp_http_out_add(&out, "Content-Type", "application/json; charset=utf-8");
    sp_http_out_add(&out, "X-Request-Id", id);
    if (status == 503)
        sp_http_out_add(&out, "Retry-After", "1");
    if (h->cbs.on_refused != NULL)
        h->cbs.on_refused(h->ctx, status, id,
                          c->url_len ? http_method_str((enum http_method)c->parser.method) : "",
                          c->url_len && c->last_cb != 1 ? c->text.data : "");
    c->closing = 1;
    c->parser.method = HTTP_GET; /* the answer always has its body */
    sp_http_respond(c, &c->req, status, &out, b.data, b.len);
    sp_buf_free(&out.head);
    sp_buf_free(&b);
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int refuse_later(struct sp_http_conn *c, int status, const char *code, const char *msg)
{
    if (c->refuse_status == 0) {
        c->refuse_status = status;
        c->refuse_code = code;
        c->refuse_msg = msg;
    }
    return -1;
}

static int head_too_big(struct sp_http_conn *c)
{
    return c->text.len + 4 * (size_t)c->nh > c->h->lim.max_header;
}

static int on_message_begin(http_parser *p)
{
    struct sp_http_conn *c = p->data;

    c->state = C_HEAD;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct sp_http_conn *c = p->data;

    if (c->url_len + len > c->h->lim.max_header)
        return refuse_later(c, 414, "uri_too_long", "request target too long");
    sp_buf_add(&c->text, at, len);
    c->url_len += len;
    c->last_cb = 1;
    return 0;
}

static void end_piece(struct sp_http_conn *c)
{
    if (c->last_cb == 1 || c->last_cb == 2) {
        sp_buf_addc(&c->text, '\0');
    } else if (c->last_cb == 3) {
        sp_buf_addc(&c->text, '\0');
        c->hoff[c->nh - 1].vl = c->text.len - 1 - c->hoff[c->nh - 1].v;
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct sp_http_conn *c = p->data;

    for (size_t i = 0; i < len; i++)
        if (at[i] == ' ' || at[i] == '\t')
            return refuse_later(c, 400, "bad_request",
                                "whitespace in a header name or before its colon");
    if (c->last_cb != 2) {
        end_piece(c);
        if (c->nh >= MAX_HEADERS)
            return refuse_later(c, 431, "headers_too_large", "too many request headers");
        if (c->nh == c->hcap) {
            int cap = c->hcap ? c->hcap * 2 : 16;
            struct hdr_off *n = realloc(c->hoff, (size_t)cap * sizeof(*n));
            if (n == NULL)
                return refuse_later(c, 503, "overloaded", "out of memory");
            c->hoff = n;
            c->hcap = cap;
        }
        c->hoff[c->nh++] = (struct hdr_off){c->text.len, 0, 0, 0};
    }
    sp_buf_add(&c->text, at, len);
    c->hoff[c->nh - 1].nl = c->text.len - c->hoff[c->nh - 1].n;
    c->last_cb = 2;
    return head_too_big(c) ? refuse_later(c, 431, "headers_too_large",
                                          "request headers too large")
                           : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct sp_http_conn *c = p->data;

    if (c->last_cb == 3) {
        /* A second piece of the same value is a continuation only when the first ended where
         * the bytes parsed ended and this one starts the next bytes; any other second piece
         * came after a line break: an obs-fold (RFC 9112 5.2). */
        if (!(c->value_at_buf_end && !c->value_at_eol && at == c->exec_start))
            return refuse_later(c, 400, "bad_request", "obsolete line folding in a header");
    } else {
        sp_buf_addc(&c->text, '\0');
        c->hoff[c->nh - 1].v = c->text.len;
    }
    sp_buf_add(&c->text, at, len);
    c->last_cb = 3;
    c->value_at_buf_end = at + len >= c->exec_end;
    c->value_at_eol = !c->value_at_buf_end && (at[len] == '\r' || at[len] == '\n');
    return head_too_big(c) ? refuse_later(c, 431, "headers_too_large",
                                          "request headers too large")
                           : 0;
}

/* Transfer-Encoding: chunked, applied once and last, is all we take (RFC 9112 6.1). */
static int check_te(struct sp_http_conn *c, const char *v)
{
    int chunked = 0;

    while (*v) {
        size_t n;
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        n = strcspn(v, ",");
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        if (n == 0)
            break;
        if (chunked)
            return refuse_later(c, 400, "bad_request", "chunked must be the last transfer coding");
        if (n == 7 && strncasecmp(v, "chunked", 7) == 0)
            chunked = 1;
        else
            return refuse_later(c, 501, "not_implemented", "unsupported transfer coding");
        v += n;
    }
    return chunked ? 0 : refuse_later(c, 400, "bad_request", "empty Transfer-Encoding");
}

static int on_headers_complete(http_parser *p)
{
    struct sp_http_conn *c = p->data;
    struct sp_http *h = c->h;
    const char *te = NULL, *expect = NULL;
    int cl = 0, nte = 0;

    end_piece(c);
    if (c->url_len == 0)
        return refuse_later(c, 400, "bad_request", "malformed request line");
    for (int i = 0; i < c->nh; i++) {
        const char *name = c->text.data + c->hoff[i].n;
        size_t nl = c->hoff[i].nl;
        if (c->hoff[i].v == 0) { /* a name without a value callback: an empty value */
            c->hoff[i].v = c->text.len;
            sp_buf_addc(&c->text, '\0');
            c->hoff[i].vl = 0;
            name = c->text.data + c->hoff[i].n;
        }
        if (nl == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)
            te = c->text.data + c->hoff[i].v, nte++;
        else if (nl == 14 && strncasecmp(name, "content-length", 14) == 0)
            cl++;
        else if (nl == 6 && strncasecmp(name, "expect", 6) == 0)
            expect = c->text.data + c->hoff[i].v;
    }
    if (te != NULL && cl > 0)
        return refuse_later(c, 400, "bad_request",
                            "Content-Length beside Transfer-Encoding"); /* RFC 9112 6.1 */
    if (cl > 1)
        return refuse_later(c, 400, "bad_request", "more than one Content-Length");
    if (te != NULL && p->http_minor == 0 && p->http_major == 1)
        return refuse_later(c, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
    if (nte > 1)
        return refuse_later(c, 400, "bad_request", "more than one Transfer-Encoding");
    if (te != NULL && check_te(c, te) != 0)
        return -1;
    if (cl > 0 && p->content_length > h->lim.max_body)
        return refuse_later(c, 413, "body_too_large", "request body too large");
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_minor >= 1 &&
        (te != NULL || (cl > 0 && p->content_length > 0))) {
        struct iovec iov = {(void *)"HTTP/1.1 100 Continue\r\n\r\n", 25};
        if (conn_writev(c, &iov, 1) != 0)
            return refuse_later(c, 400, "bad_request", "connection lost");
    }
    c->state = C_BODY;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct sp_http_conn *c = p->data;

    if (c->body.len + len > c->h->lim.max_body)
        return refuse_later(c, 413, "body_too_large", "request body too large");
    sp_buf_add(&c->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* The parsed request, pointers into the connection's buffers. */
static int build_request(struct sp_http_conn *c)
{
    struct sp_http_req *r = &c->req;
    size_t plen, at;
    char *target;

    if (c->nh > c->hdrs_cap) {
        struct sp_http_header *n = realloc(c->headers, (size_t)c->nh * sizeof(*n));
        if (n == NULL)
            return -1;
        c->headers = n;
        c->hdrs_cap = c->nh;
    }
    /* path and query: copies after everything else, split at '?' and cut at '#' */
    at = c->text.len;
    sp_buf_reserve(&c->text, c->url_len + 2);
    if (c->text.data == NULL)
        return -1;
    memcpy(c->text.data + at, c->text.data, c->url_len); /* the buffer may have moved */
    c->text.len += c->url_len;
    sp_buf_addc(&c->text, '\0');
    sp_buf_addc(&c->text, '\0');
    if (c->text.data == NULL)
        return -1;
    target = c->text.data + at;
    target[strcspn(target, "#")] = '\0';
    plen = strcspn(target, "?");
    r->query = NULL;
    if (target[plen] == '?') {
        target[plen] = '\0';
        r->query = target + plen + 1;
    }
    r->path = target;
    r->target = c->text.data;
    for (int i = 0; i < c->nh; i++) {
        c->headers[i].name = c->text.data + c->hoff[i].n;
        c->headers[i].name_len = c->hoff[i].nl;
        char *v = c->text.data + c->hoff[i].v;
        size_t vl = c->hoff[i].vl;
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0'; /* optional whitespace is not part of the value (RFC 9110 5.5) */
        c->headers[i].value = v;
        c->headers[i].value_len = vl;
    }
    r->headers = c->headers;
    r->nheaders = c->nh;
    sp_buf_addc(&c->body, '\0');
    c->body.len--;
    r->body = c->body.data;
    r->body_len = c->body.len;
    r->method = http_method_str((enum http_method)c->parser.method);
    r->peer = c->peer;
    r->http_minor = c->parser.http_minor;
    return 0;
}

static void parse_error(struct sp_http_conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

    switch (e) {
    case HPE_HEADER_OVERFLOW:
        if (c->nh == 0) /* still in the request line */
            conn_refuse(c, 414, "uri_too_long", "request target too long");
        else
            conn_refuse(c, 431, "headers_too_large", "request headers too large");
        return;
    case HPE_INVALID_TRANSFER_ENCODING:
        conn_refuse(c, 501, "not_implemented", "unsupported transfer coding");
        return;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        conn_refuse(c, 400, "bad_request", "conflicting Content-Length or Transfer-Encoding");
        return;
    case HPE_INVALID_CONTENT_LENGTH:
        conn_refuse(c, 400, "bad_request", "invalid Content-Length");
        return;
    case HPE_INVALID_CHUNK_SIZE:
        conn_refuse(c, 400, "bad_request", "invalid chunk size");
        return;
    case HPE_INVALID_METHOD:
        conn_refuse(c, 400, "bad_request", "malformed request line (method)");
        return;
    default: break;
    }
    {
        char msg[160];
        snprintf(msg, sizeof(msg), "malformed request: %s", http_errno_description(e));
        /* a static message is needed beyond this call: refuse now */
        conn_refuse(c, 400, "bad_request", msg);
    }
}

/* Parses what was read, one request at a time. */
static void conn_process(struct sp_http_conn *c)
{
    struct sp_http *h = c->h;

    if (c->in_process)
        return;
    c->in_process = 1;
    while (!c->dead && (c->state == C_IDLE || c->state == C_HEAD || c->state == C_BODY) &&
           !c->closing && !out_pending(c) && c->in_off < c->in.len) {
        const char *data = c->in.data + c->in_off;
        size_t avail = c->in.len - c->in_off, n;

        if (c->state == C_IDLE) {
            idle_leave(c);
            if (h->draining) {
                c->closing = 1;
                break;
            }
            c->nreqs++;
            c->head_timed = 0;
        }
        c->exec_start = data;
        c->exec_end = data + avail;
        n = http_parser_execute(&c->parser, &settings, data, avail);
        c->in_off += n;
        if (c->refuse_status != 0) {
            conn_refuse(c, c->refuse_status, c->refuse_code, c->refuse_msg);
            break;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (build_request(c) != 0) {
                conn_refuse(c, 503, "overloaded", "out of memory");
                break;
            }
            c->state = C_BUSY;
            timer_clear(c);
            if (c->parser.upgrade)
                c->keep_alive = 0; /* what follows is not HTTP we speak */
            h->cbs.on_request(h->ctx, c, &c->req);
            continue;
        }
        if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
            parse_error(c);
            break;
        }
        if (c->state == C_BODY)
            timer_set(c, h->tv_read);
        if (c->state == C_HEAD) {
            if (!c->head_timed) { /* from the request's first bytes: no reset per read */
                c->head_timed = 1;
                timer_set(c, h->tv_header);
            }
            c->head_bytes += n;
            if (c->head_bytes > h->lim.max_header + 4096) {
                conn_refuse(c, 431, "headers_too_large", "request headers too large");
                break;
            }
        }
    }
    /* keep the unparsed bytes at the front */
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
    } else if (c->in_off > 0 && c->state != C_BUSY) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    c->in_process = 0;
    if (c->dead) {
        conn_close(c);
        return;
    }
    if (c->closing && !out_pending(c) && c->state != C_LINGER && c->state != C_BUSY) {
        after_output(c);
        return;
    }
    if (c->state == C_IDLE && c->in.len == 0 && !out_pending(c)) {
        if (c->eof || h->draining) {
            conn_close(c);
            return;
        }
        idle_enter(c);
    }
    if (c->state != C_BUSY && !c->eof && c->in.len - c->in_off < INPUT_HOLD)
        want_read(c, 1);
}

/* ---- reading ---------------------------------------------------------------------------- */

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct sp_http_conn *c = arg;
    ssize_t n;

    SP_UNUSED(what);
    for (int round = 0; round < 4; round++) {
        if (c->state == C_LINGER) {
            char sink[4096];
            do
                n = read(fd, sink, sizeof(sink));
            while (n < 0 && errno == EINTR);
            if (n > 0)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            conn_close(c);
            return;
        }
        in_take(c);
        sp_buf_reserve(&c->in, READ_CHUNK);
        if (c->in.data == NULL) {
            conn_close(c);
            return;
        }
        do
            n = read(fd, c->in.data + c->in.len, c->in.cap - c->in.len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->eof = 1;
            if (c->state == C_BUSY || c->state == C_HEAD || c->state == C_BODY ||
                c->in.len == c->in_off) {
                conn_close(c); /* a request in flight is cancelled */
                return;
            }
            want_read(c, 0); /* nothing more will come: answer what was read, then close */
            break;
        }
        c->in.len += (size_t)n;
        if (c->state == C_BODY)
            timer_set(c, c->h->tv_read);
        if (c->in.cap - c->in.len > 0)
            break; /* the socket had no more */
    }
    if (c->state == C_BUSY) {
        if (c->in.len - c->in_off >= INPUT_HOLD)
            want_read(c, 0); /* pipelined bytes wait for the answer in flight */
        return;
    }
    conn_process(c);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct sp_http_conn *c = arg;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    c->armed_ms = 0;
    if (c->due_ms == 0)
        return; /* cleared since it was set */
    {
        int64_t left = c->due_ms - mono_ms();
        if (left > 0) { /* set again later than it was armed for: the rest */
            struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
            event_add(c->timer, &tv);
            c->armed_ms = c->due_ms;
            return;
        }
    }
    c->due_ms = 0;
    if (out_pending(c) || c->state == C_LINGER || c->state == C_IDLE) {
        conn_close(c); /* a client that does not read, a linger over, an idle keep-alive */
        return;
    }
    if (c->state == C_HEAD || c->state == C_BODY) {
        conn_refuse(c, 408, "request_timeout", "request not received in time");
        return;
    }
}

/* ---- connections ------------------------------------------------------------------------- */

static struct sp_http_conn *conn_new(struct sp_http *h, int fd)
{
    struct sp_http_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->h = h;
    c->fd = fd;
    if (fd >= 0) {
        c->rev = event_new(h->base, fd, EV_READ | EV_PERSIST, on_read, c);
        c->wev = event_new(h->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
        c->timer = evtimer_new(h->base, on_timeout, c);
        if (c->rev == NULL || c->wev == NULL || c->timer == NULL) {
            if (c->rev)
                event_free(c->rev);
            if (c->wev)
                event_free(c->wev);
            if (c->timer)
                event_free(c->timer);
            free(c);
            return NULL;
        }
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = C_IDLE;
    TAILQ_INSERT_TAIL(&h->conns, c, all);
    h->nconns++;
    publish_count(h);
    return c;
}

static void conn_close(struct sp_http_conn *c)
{
    struct sp_http *h = c->h;

    if (c->in_process) {
        c->dead = 1; /* conn_process() frees it on its way out */
        if (c->state == C_BUSY && h->cbs.on_cancel != NULL) {
            c->state = C_IDLE;
            h->cbs.on_cancel(h->ctx, &c->req);
        }
        return;
    }
    if (c->state == C_BUSY && h->cbs.on_cancel != NULL) {
        c->state = C_IDLE;
        h->cbs.on_cancel(h->ctx, &c->req);
    }
    idle_leave(c);
    TAILQ_REMOVE(&h->conns, c, all);
    h->nconns--;
    publish_count(h);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    held_drop(c); /* a body still being written: its owner may free it now */
    in_release(c);
    sp_buf_free(&c->out);
    sp_buf_free(&c->head);
    sp_buf_free(&c->text);
    sp_buf_free(&c->body);
    free(c->hoff);
    free(c->headers);
    free(c);
    if (h->at_cap && h->nconns < h->lim.max_connections) {
        h->at_cap = 0;
        sp_log(SP_LOG_INFO, "connections below the cap again (%d open)", h->nconns);
    }
    if (h->draining && h->nconns == 0 && h->cbs.on_drained != NULL)
        h->cbs.on_drained(h->ctx);
}

/* Over the cap: a short 503, written if the socket takes it at once, then closed. */
static void refuse_connection(struct sp_http *h, int fd)
{
    char id[72] = "", body[160], buf[640];
    int n, blen;

    if (!h->at_cap) {
        h->at_cap = 1;
        sp_log(SP_LOG_WARN,
               "connection cap reached: %d open (http.max_connections); new clients get 503",
               h->nconns);
    }
    if (h->cbs.make_id != NULL)
        h->cbs.make_id(h->ctx, id, sizeof(id));
    blen = snprintf(body, sizeof(body),
                    "{\"error\":\"too many connections\",\"code\":\"overloaded\","
                    "\"request_id\":\"%s\"}",
                    id);
    n = snprintf(buf, sizeof(buf),
                 "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nContent-Type: application/json; "
                 "charset=utf-8\r\nX-Request-Id: %s\r\nRetry-After: 1\r\nConnection: close\r\n"
                 "Content-Length: %d\r\n\r\n%s",
                 http_date(h), id, blen, body);
    if (n > 0 && write(fd, buf, (size_t)n) < 0)
        (void)0; /* nothing more to do for it */
    if (h->cbs.on_refused != NULL)
        h->cbs.on_refused(h->ctx, 503, id, "", "");
    close(fd);
}

/* ---- sharing the listener between workers ------------------------------------------------ */

static void publish_count(struct sp_http *h)
{
    if (h->bal_counts != NULL)
        __atomic_store_n(&h->bal_counts[h->bal_self], h->draining ? -1 : h->nconns,
                         __ATOMIC_RELAXED);
}

/* 1 when another worker that accepts holds fewer connections than this one. */
static int ahead(const struct sp_http *h)
{
    for (int i = 0; i < h->bal_n; i++) {
        int n = i == h->bal_self ? -1 : __atomic_load_n(&h->bal_counts[i], __ATOMIC_RELAXED);
        if (n >= 0 && n < h->nconns)
            return 1;
    }
    return 0;
}

static void accept_some(struct sp_http *h, int forced);

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    SP_UNUSED(lfd);
    SP_UNUSED(what);
    accept_some(arg, 0);
}

/* The head start is over: one connection the others have not taken by now, this worker takes
 * (and more while it is not ahead). */
static void on_defer_end(evutil_socket_t fd, short what, void *arg)
{
    struct sp_http *h = arg;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (h->draining || h->accept_ev == NULL)
        return;
    event_add(h->accept_ev, NULL);
    accept_some(h, 1);
}

/* Takes the connections waiting on the listener, up to ACCEPT_BATCH. All workers share one
 * listener (woken together, the first to call accept4() gets the connection); a worker
 * holding more connections than another steps back for DEFER_US before it takes one, so
 * that connections opened together (a client's or a proxy's keep-alive pool) spread evenly
 * instead of going to whichever worker the kernel woke first. A worker that does not take
 * them (busy, stuck) holds them up by DEFER_US each at most: the others take one per
 * DEFER_US meanwhile; one that has exited or drains counts -1 and is left out. */
static void accept_some(struct sp_http *h, int forced)
{
    int lfd = h->listen_fd;

    for (int i = 0; i < ACCEPT_BATCH && !h->draining; i++) {
        if (!(forced && i == 0) && h->bal_counts != NULL && ahead(h)) {
            struct timeval tv = {0, DEFER_US};
            event_del(h->accept_ev);
            evtimer_add(h->defer_ev, &tv);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int one = 1, fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct sp_http_conn *c;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                sp_log(SP_LOG_WARN, "accept: %s (raise the open files limit)", strerror(errno));
            return; /* EAGAIN, or a client gone before we took it */
        }
        if (h->nconns >= h->lim.max_connections) {
            refuse_connection(h, fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if ((c = conn_new(h, fd)) == NULL) {
            close(fd);
            continue;
        }
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof(c->peer));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer,
                      sizeof(c->peer));
        want_read(c, 1);
        idle_enter(c);
    }
}

struct sp_http *sp_http_new(struct event_base *base, int listen_fd,
                            const struct sp_http_limits *lim, const struct sp_http_cbs *cbs,
                            void *ctx, sp_err *err)
{
    struct sp_http *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        sp_err_set(err, "out of memory");
        return NULL;
    }
    h->base = base;
    h->listen_fd = listen_fd;
    h->lim = *lim;
    h->cbs = *cbs;
    h->ctx = ctx;
    TAILQ_INIT(&h->conns);
    TAILQ_INIT(&h->idle);
    http_parser_set_max_header_size((uint32_t)(lim->max_header + 8192));
    ms_tv(&h->tv_header_s, lim->header_timeout_ms);
    ms_tv(&h->tv_read_s, lim->read_timeout_ms);
    ms_tv(&h->tv_keepalive_s, lim->keepalive_timeout_ms);
    ms_tv(&h->tv_linger_s, LINGER_MS);
    /* Many connections share each of these: O(1) timer queues instead of the heap. */
#define COMMON(f) (h->f = event_base_init_common_timeout(base, &h->f##_s), h->f ? h->f : &h->f##_s)
    h->tv_header = COMMON(tv_header);
    h->tv_read = COMMON(tv_read);
    h->tv_keepalive = COMMON(tv_keepalive);
    h->tv_linger = COMMON(tv_linger);
#undef COMMON
    if (listen_fd >= 0) {
        h->accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, on_accept, h);
        if (h->accept_ev == NULL || event_add(h->accept_ev, NULL) != 0) {
            sp_err_set(err, "cannot watch the listening socket");
            sp_http_free(h);
            return NULL;
        }
    }
    return h;
}

void sp_http_drain(struct sp_http *h)
{
    struct sp_http_conn *c;

    h->draining = 1;
    publish_count(h);
    if (h->accept_ev != NULL) {
        event_free(h->accept_ev);
        h->accept_ev = NULL;
    }
    if (h->defer_ev != NULL)
        event_del(h->defer_ev);
    while ((c = TAILQ_FIRST(&h->idle)) != NULL)
        conn_close(c);
}

void sp_http_free(struct sp_http *h)
{
    struct sp_http_conn *c;

    if (h == NULL)
        return;
    if (h->accept_ev != NULL)
        event_free(h->accept_ev);
    if (h->defer_ev != NULL)
        event_free(h->defer_ev);
    while ((c = TAILQ_FIRST(&h->conns)) != NULL)
        conn_close(c);
    while (h->nspare > 0)
        sp_buf_free(&h->spare[--h->nspare]);
    free(h);
}

int sp_http_connections(const struct sp_http *h)
{
    return h->nconns;
}

int sp_http_balance(struct sp_http *h, int *counts, int n, int self)
{
    if (counts == NULL || n < 2 || self < 0 || self >= n || h->listen_fd < 0)
        return 0;
    if (h->defer_ev == NULL && (h->defer_ev = evtimer_new(h->base, on_defer_end, h)) == NULL)
        return -1;
    h->bal_counts = counts;
    h->bal_n = n;
    h->bal_self = self;
    publish_count(h);
    return 0;
}

/* ---- without sockets --------------------------------------------------------------------- */

struct sp_http_conn *sp_http_conn_fake(struct sp_http *h)
{
    struct sp_http_conn *c = conn_new(h, -1);

    if (c != NULL)
        snprintf(c->peer, sizeof(c->peer), "127.0.0.1");
    return c;
}

int sp_http_conn_feed(struct sp_http_conn *c, const char *data, size_t len)
{
    struct sp_http *h = c->h;
    struct sp_http_conn *it;
    int gone = 0;

    if (c->state == C_LINGER)
        return 0;
    sp_buf_add(&c->in, data, len);
    if (c->state != C_BUSY)
        conn_process(c);
    TAILQ_FOREACH(it, &h->conns, all)
    {
        if (it == c)
            gone = 1;
    }
    return gone ? 0 : -1;
}

void sp_http_conn_close(struct sp_http_conn *c)
{
    conn_close(c);
}
