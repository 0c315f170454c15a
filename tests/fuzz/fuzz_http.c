/* fuzz_http.c: the HTTP/1.1 connection layer (core/http.c) fed bytes without a socket. The
 * first input byte picks how the rest is cut into reads (framing state must survive any cut);
 * every complete request is answered at once, so pipelines run through, and its query string
 * is split as req.c does. Build: see the Makefile's fuzz rules (libFuzzer, clang). */
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "http.h"

static struct event_base *base;
static struct sp_http *http;
static size_t sink; /* keeps the reads of the request from being optimised away */

static void on_request(void *ctx, struct sp_http_conn *c, struct sp_http_req *r)
{
    struct sp_http_out out = {0};
    struct evkeyvalq q;
    struct evkeyval *kv;

    (void)ctx;
    for (int i = 0; i < r->nheaders; i++)
        sink += strlen(r->headers[i].name) + r->headers[i].value_len;
    sink += strlen(r->path) + strlen(r->method) + strlen(r->target);
    if (r->body_len > 0)
        sink += (unsigned char)r->body[r->body_len - 1];
    TAILQ_INIT(&q);
    if (r->query != NULL && evhttp_parse_query_str(r->query, &q) == 0)
        TAILQ_FOREACH(kv, &q, next)
            sink += strlen(kv->key) + strlen(kv->value);
    evhttp_clear_headers(&q);
    sp_http_out_add(&out, "Content-Type", "application/json");
    if (sp_http_req_header(r, "X-Echo") != NULL)
        sp_http_out_add(&out, "X-Echo", sp_http_req_header(r, "X-Echo"));
    sp_http_respond(c, r, r->body_len ? 201 : 200, &out, r->body, r->body_len);
    sp_buf_free(&out.head);
}

static void on_cancel(void *ctx, struct sp_http_req *r)
{
    (void)ctx;
    (void)r;
}

static void make_id(void *ctx, char *buf, size_t cap)
{
    (void)ctx;
    strncpy(buf, "fuzz-1", cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_http_conn *c;
    size_t step, at = 1;

    if (http == NULL) {
        struct sp_http_limits lim = {
            .max_header = 2048, .max_body = 8192, .header_timeout_ms = 1000,
            .read_timeout_ms = 1000, .keepalive_timeout_ms = 1000, .keepalive_requests = 50,
            .max_idle = 16, .max_connections = 16,
        };
        struct sp_http_cbs cbs = {on_request, on_cancel, NULL, make_id, NULL};
        sp_err err;
        base = event_base_new();
        http = sp_http_new(base, -1, &lim, &cbs, NULL, &err);
        if (http == NULL)
            abort();
    }
    if (size < 1)
        return 0;
    step = data[0] == 0 ? size : (size_t)data[0] % 64 + 1; /* 0: all at once */
    if ((c = sp_http_conn_fake(http)) == NULL)
        return 0;
    while (at < size) {
        size_t n = size - at < step ? size - at : step;
        if (sp_http_conn_feed(c, (const char *)data + at, n) != 0)
            return 0; /* closed (and freed) by the layer */
        at += n;
    }
    sp_http_conn_close(c);
    return 0;
}
