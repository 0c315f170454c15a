/* test_files.c: core/files.c, the process's shared static files (one copy found again while
 * the file is unchanged, a new one when it changes, the old one kept while held), and the
 * held body of core/http.c (sp_http_respond_ref): written from the owner's bytes over a real
 * socket that does not take it at once, released once, when written or when the client goes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "files.h"
#include "http.h"

static char dir[] = "/tmp/spacer-test-files.XXXXXX";

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(strlen(content), fwrite(content, 1, strlen(content), f));
    assert_int_equal(0, fclose(f));
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void test_same_file_same_copy(void **state)
{
    struct sp_file *a = NULL, *b = NULL, *c = NULL;
    char path[256];
    sp_err err;

    (void)state;
    path_of(path, sizeof(path), "a.css");
    write_file(path, "body{}");
    assert_int_equal(0, sp_file_get(path, 1 << 20, &a, &err));
    assert_int_equal(0, sp_file_get(path, 1 << 20, &b, &err));
    assert_ptr_equal(a, b); /* not read again */
    assert_int_equal(6, a->len);
    assert_memory_equal("body{}", a->data, 6);
    /* the first 128 bits of its SHA-256, as lib/static.lua makes them for generated content */
    assert_string_equal("\"7c98040a541657584690ae2a1cc3b42a\"", a->etag);
    assert_int_equal(1, sp_files_count());
    /* touched: new times, the same bytes, the same object */
    assert_int_equal(0, utimensat(AT_FDCWD, path, NULL, 0));
    assert_int_equal(0, sp_file_get(path, 1 << 20, &c, &err));
    assert_ptr_equal(a, c);
    assert_int_equal(1, sp_files_count());
    sp_file_unref(a);
    sp_file_unref(b);
    sp_file_unref(c);
    assert_int_equal(0, sp_files_count());
}

static void test_changed_file_new_copy_old_kept(void **state)
{
    struct sp_file *old = NULL, *cur = NULL, *again = NULL;
    char path[256], etag[SP_FILE_ETAG_LEN];
    sp_err err;

    (void)state;
    path_of(path, sizeof(path), "b.js");
    write_file(path, "let a = 1;");
    assert_int_equal(0, sp_file_get(path, 1 << 20, &old, &err));
    memcpy(etag, old->etag, sizeof(etag));
    /* the same size, rewritten in place: the change time tells */
    write_file(path, "let b = 2;");
    assert_int_equal(0, sp_file_get(path, 1 << 20, &cur, &err));
    assert_ptr_not_equal(old, cur);
    assert_memory_equal("let b = 2;", cur->data, 10);
    assert_string_not_equal(etag, cur->etag);
    assert_memory_equal("let a = 1;", old->data, 10); /* whoever holds the old one keeps it */
    assert_int_equal(2, sp_files_count());
    assert_int_equal(0, sp_file_get(path, 1 << 20, &again, &err));
    assert_ptr_equal(cur, again); /* the store finds the new one, never the old */
    sp_file_unref(old);
    assert_int_equal(1, sp_files_count());
    sp_file_unref(cur);
    sp_file_unref(again);
    assert_int_equal(0, sp_files_count());
}

static void test_refusals(void **state)
{
    struct sp_file *f = NULL;
    char path[256];
    sp_err err;

    (void)state;
    path_of(path, sizeof(path), "big.txt");
    write_file(path, "0123456789");
    assert_int_equal(-1, sp_file_get(path, 9, &f, &err));
    assert_string_equal("larger than the limit", err.msg);
    assert_int_equal(-1, sp_file_get(dir, 1 << 20, &f, &err));
    assert_string_equal("not a regular file", err.msg);
    path_of(path, sizeof(path), "missing");
    assert_int_equal(-1, sp_file_get(path, 1 << 20, &f, &err));
    assert_non_null(strstr(err.msg, "No such file"));
    assert_int_equal(0, sp_files_count());
}

/* ---- the held body --------------------------------------------------------------------- */

#define BIG (8u << 20) /* more than the kernel's buffers take for a client that does not read */

struct held_ctx {
    char *body;
    int released;
    int answered;
};

static void release(void *arg)
{
    ((struct held_ctx *)arg)->released++;
}

static void on_request(void *ctx, struct sp_http_conn *c, struct sp_http_req *r)
{
    struct held_ctx *h = ctx;
    struct sp_http_out out = {0};

    sp_http_out_add(&out, "Content-Type", "application/octet-stream");
    sp_http_respond_ref(c, r, 200, &out, h->body, BIG, release, h);
    sp_buf_free(&out.head);
    h->answered = 1;
}

static void on_cancel(void *ctx, struct sp_http_req *r)
{
    (void)ctx;
    (void)r;
}

struct server {
    struct event_base *base;
    struct sp_http *http;
    int lfd, cfd;
    struct held_ctx h;
};

static void server_start(struct server *s)
{
    struct sp_http_limits lim = {16384, 1 << 20, 60000, 60000, 60000, 100, 10, 10};
    struct sp_http_cbs cbs = {on_request, on_cancel, NULL, NULL, NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int small = 4096;
    const char *req = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    sp_err err;

    memset(&s->h, 0, sizeof(s->h));
    s->h.body = malloc(BIG);
    assert_non_null(s->h.body);
    for (size_t i = 0; i < BIG; i++)
        s->h.body[i] = (char)('a' + (i * 7 + i / 4093) % 26);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_int_equal(0, bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)));
    assert_int_equal(0, listen(s->lfd, 8));
    assert_int_equal(0, getsockname(s->lfd, (struct sockaddr *)&sa, &len));
    s->base = event_base_new();
    s->http = sp_http_new(s->base, s->lfd, &lim, &cbs, &s->h, &err);
    assert_non_null(s->http);
    s->cfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s->cfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    assert_int_equal(0, connect(s->cfd, (struct sockaddr *)&sa, sizeof(sa)));
    assert_int_equal((ssize_t)strlen(req), write(s->cfd, req, strlen(req)));
    for (int i = 0; i < 200 && !s->h.answered; i++) {
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_true(s->h.answered);
    for (int i = 0; i < 20; i++) { /* the socket takes what it takes */
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static void server_stop(struct server *s)
{
    sp_http_free(s->http);
    event_base_free(s->base);
    close(s->lfd);
    free(s->h.body);
}

static void test_held_body_written_whole(void **state)
{
    struct server s;
    char *got = malloc(BIG + 4096), *body;
    size_t n = 0;

    (void)state;
    assert_non_null(got);
    server_start(&s);
    assert_int_equal(0, s.h.released); /* still being written: held, not copied */
    fcntl(s.cfd, F_SETFL, O_NONBLOCK);
    setsockopt(s.cfd, SOL_SOCKET, SO_RCVBUF, &(int){4 << 20}, sizeof(int)); /* now read fast */
    while (n < BIG + 4096) {
        ssize_t r = read(s.cfd, got + n, BIG + 4096 - n);
        if (r > 0) {
            n += (size_t)r;
            body = memmem(got, n, "\r\n\r\n", 4);
            if (body != NULL && (size_t)(got + n - (body + 4)) == BIG)
                break;
        } else if (r == 0) {
            break;
        } else if (errno != EAGAIN) {
            fail_msg("read: %s after %zu bytes", strerror(errno), n);
        }
        event_base_loop(s.base, EVLOOP_NONBLOCK);
    }
    body = memmem(got, n, "\r\n\r\n", 4);
    assert_non_null(body);
    if (memmem(got, (size_t)(body - got) + 2, "Content-Length: 8388608\r\n", 25) == NULL)
        fail_msg("head: %.*s", (int)(body - got), got);
    assert_int_equal(BIG, (size_t)(got + n - (body + 4)));
    assert_memory_equal(s.h.body, body + 4, BIG);
    assert_int_equal(1, s.h.released); /* once written */
    close(s.cfd);
    server_stop(&s);
    assert_int_equal(1, s.h.released);
    free(got);
}

static void test_held_body_released_when_client_goes(void **state)
{
    struct server s;

    (void)state;
    server_start(&s);
    assert_int_equal(0, s.h.released);
    close(s.cfd); /* gone mid-body */
    for (int i = 0; i < 200 && s.h.released == 0; i++) {
        event_base_loop(s.base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_int_equal(1, s.h.released);
    server_stop(&s);
    assert_int_equal(1, s.h.released);
}

static void test_held_body_released_when_server_ends(void **state)
{
    struct server s;

    (void)state;
    server_start(&s);
    assert_int_equal(0, s.h.released);
    server_stop(&s); /* the worker ends mid-body: the owner gets its bytes back */
    assert_int_equal(1, s.h.released);
    close(s.cfd);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_file_same_copy),
        cmocka_unit_test(test_changed_file_new_copy_old_kept),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_held_body_written_whole),
        cmocka_unit_test(test_held_body_released_when_client_goes),
        cmocka_unit_test(test_held_body_released_when_server_ends),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup, teardown);
}
