/* test_lua_http.c: spacer.http's life cycle in the real VM and loop, without a database:
 * a call that completes, and calls cancelled because their request ended while they waited
 * (before the connection, while waiting for an answer, in the middle of a TLS handshake).
 * Run under ASan or valgrind, this shows a cancelled call leaves nothing behind and no
 * callback ever reaches freed memory. The servers are on 127.0.0.1: an evhttp server on the
 * same loop, and a socket that accepts in the kernel and never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "gen.h"
#include "runner.h"
#include "req.h"

struct t {
    char dir[64];
    struct sp_conf *conf;
    struct sp_runner *r;
    struct evhttp *http;
    int http_port;
    int silent_fd, silent_port;
};

static int done_calls, done_ok;

static void on_done(struct sp_req *req, int ok)
{
    SP_UNUSED(req);
    done_calls++;
    done_ok = ok;
}

static void hello(struct evhttp_request *ev, void *arg)
{
    SP_UNUSED(arg);
    evhttp_add_header(evhttp_request_get_output_headers(ev), "X-Hello", "yes");
    evbuffer_add_printf(evhttp_request_get_output_buffer(ev), "hello %s",
                        evhttp_request_get_uri(ev));
    evhttp_send_reply(ev, 202, "Accepted", NULL);
}

static int listen_any(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sp_host *runner_host; /* the runner's host */

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));
    char path[128], text[512];
    FILE *f;
    sp_err err;
    int fd;

    snprintf(t->dir, sizeof(t->dir), "/tmp/spacer-httpc-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(path, sizeof(path), "%s/init.lua", t->dir);
    assert_non_null(f = fopen(path, "w"));
    fclose(f);
    snprintf(text, sizeof(text),
             "[scripts]\ndir = %s\nplugins = %s\n[database]\nurl = host=/nonexistent\n"
             "[http_client]\ntimeout = 5\n",
             t->dir, t->dir);
    if (sp_conf_parse(text, "test.conf", &t->conf, &err) != 0)
        fail_msg("%s", err.msg);
    if (sp_runner_new(t->conf, &t->r, &err) != 0)
        fail_msg("%s", err.msg);
    runner_host = sp_runner_host(t->r);
    t->http = evhttp_new(runner_host->base);
    fd = listen_any(&t->http_port);
    evutil_make_socket_nonblocking(fd);
    assert_non_null(evhttp_accept_socket_with_handle(t->http, fd));
    evhttp_set_gencb(t->http, hello, NULL);
    t->silent_fd = listen_any(&t->silent_port);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    char path[128];

    evhttp_free(t->http);
    close(t->silent_fd);
    sp_runner_free(t->r);
    sp_conf_free(t->conf);
    snprintf(path, sizeof(path), "%s/init.lua", t->dir);
    unlink(path);
    rmdir(t->dir);
    free(t);
    return 0;
}

/* Starts `return spacer.http.request{url = url}` in a request of the runner's generation. */
static struct sp_req *start_call(const char *url)
{
    struct sp_gen *gen = runner_host->gen;
    lua_State *L = gen->L, *co;
    struct sp_req *req = calloc(1, sizeof(*req));
    char chunk[256];

    assert_non_null(req);
    req->w = runner_host;
    req->gen = gen;
    sp_gen_ref(gen);
    req->on_done = on_done;
    snprintf(req->id, sizeof(req->id), "unit");
    co = lua_newthread(L);
    req->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req->co = co;
    sp_gen_set_req(co, req);
    sp_gen_arm_limits(gen, co);
    snprintf(chunk, sizeof(chunk), "return spacer.http.request{ url = \"%s\" }", url);
    assert_int_equal(luaL_loadstring(co, chunk), LUA_OK);
    sp_gen_push_env(gen);
    lua_xmove(L, co, 1);
    lua_setupvalue(co, -2, 1);
    done_calls = 0;
    sp_req_start(req, 0);
    return req;
}

/* What the end of a request does (req.c req_free): cancel what it waits on, free. */
static void end_request(struct sp_req *req)
{
    if (req->cancel != NULL)
        req->cancel(req->cancel_arg);
    sp_req_release_pins(req);
    luaL_unref(req->gen->L, LUA_REGISTRYINDEX, req->co_ref);
    sp_gen_unref(req->gen);
    free(req);
}

static void run_loop_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(runner_host->base, &tv);
    event_base_dispatch(runner_host->base);
}

static void test_completes(void **state)
{
    struct t *t = *state;
    char url[128];
    struct sp_req *req;
    lua_State *co;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x?y=1", t->http_port);
    req = start_call(url);
    assert_int_equal(req->pending, 1);
    assert_non_null(req->cancel);
    for (int i = 0; i < 50 && done_calls == 0; i++)
        run_loop_ms(100);
    assert_int_equal(done_calls, 1);
    assert_true(done_ok);
    assert_int_equal(req->pending, 0);
    assert_null(req->cancel);
    co = req->co;
    assert_true(lua_istable(co, -1));
    lua_getfield(co, -1, "status");
    assert_int_equal(lua_tointeger(co, -1), 202);
    lua_getfield(co, -2, "body");
    assert_string_equal(lua_tostring(co, -1), "hello /x?y=1");
    lua_getfield(co, -3, "headers");
    lua_getfield(co, -1, "x-hello");
    assert_string_equal(lua_tostring(co, -1), "yes");
    assert_int_equal(req->http_calls, 1);
    end_request(req);
}

static void cancel_after(const char *url, int ms)
{
    struct sp_req *req = start_call(url);

    assert_int_equal(req->pending, 1);
    assert_non_null(req->cancel);
    if (ms > 0)
        run_loop_ms(ms);
    assert_int_equal(done_calls, 0); /* still waiting */
    end_request(req);
    run_loop_ms(200); /* nothing of the call may fire now */
    assert_int_equal(done_calls, 0);
}

static void test_cancel_before_connecting(void **state)
{
    struct t *t = *state;
    char url[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", t->silent_port);
    cancel_after(url, 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", t->silent_port);
    cancel_after(url, 0);
}

static void test_cancel_while_waiting_for_the_answer(void **state)
{
    struct t *t = *state;
    char url[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", t->silent_port);
    cancel_after(url, 300);
}

static void test_cancel_during_the_tls_handshake(void **state)
{
    struct t *t = *state;
    char url[128];

    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", t->silent_port);
    cancel_after(url, 300);
}

static void test_cancel_after_the_answer_arrived(void **state)
{
    struct t *t = *state;
    char url[128];
    struct sp_req *req;

    /* The answer is recorded, the resuming event not yet run: the request ends in between. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", t->http_port);
    req = start_call(url);
    for (int i = 0; i < 200; i++)
        event_base_loop(runner_host->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    end_request(req);
    run_loop_ms(100);
    assert_true(done_calls <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completes),
        cmocka_unit_test(test_cancel_before_connecting),
        cmocka_unit_test(test_cancel_while_waiting_for_the_answer),
        cmocka_unit_test(test_cancel_during_the_tls_handshake),
        cmocka_unit_test(test_cancel_after_the_answer_arrived),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
