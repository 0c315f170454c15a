/* test_log.c: core/log.c: the access log's buffer — whole lines kept, written together when
 * full or flushed, before any other line, and in pieces of whole lines no larger than PIPE_BUF
 * when standard error is not a file. Standard error is a SOCK_SEQPACKET socket here, so each
 * write(2) arrives as one message and its bounds can be checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sp.h"

static int saved_stderr = -1, peer = -1;

static int setup(void **state)
{
    int sv[2];

    SP_UNUSED(state);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return -1;
    saved_stderr = dup(STDERR_FILENO);
    dup2(sv[0], STDERR_FILENO);
    close(sv[0]);
    peer = sv[1];
    fcntl(peer, F_SETFL, O_NONBLOCK);
    return 0;
}

static int teardown(void **state)
{
    SP_UNUSED(state);
    sp_log_buffer_free();
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(peer);
    return 0;
}

/* The writes that arrived since the last call: their count; their bytes appended to all. */
static int writes(struct sp_buf *all, size_t *largest)
{
    static char msg[1 << 20];
    ssize_t n;
    int count = 0;

    *largest = 0;
    while ((n = recv(peer, msg, sizeof(msg), 0)) > 0) {
        count++;
        if ((size_t)n > *largest)
            *largest = (size_t)n;
        assert_int_equal(msg[n - 1], '\n'); /* each write ends a line */
        sp_buf_add(all, msg, (size_t)n);
    }
    return count;
}

/* Line k: {"type":"access","k":k,"pad":"xxx..."} of about len bytes. */
static size_t make_line(char *buf, size_t cap, int k, size_t len)
{
    int n = snprintf(buf, cap, "{\"type\":\"access\",\"k\":%d,\"pad\":\"", k);

    while ((size_t)n + 3 < len && (size_t)n + 3 < cap)
        buf[n++] = 'x';
    buf[n++] = '"';
    buf[n++] = '}';
    buf[n++] = '\n';
    return (size_t)n;
}

static void test_lines_wait_until_flushed(void **state)
{
    struct sp_buf all = {0}, want = {0};
    char line[512];
    size_t largest;

    SP_UNUSED(state);
    assert_int_equal(sp_log_buffer_init(4096), 0);
    for (int k = 0; k < 10; k++) {
        size_t n = make_line(line, sizeof(line), k, 100);
        assert_int_equal(sp_log_buffered(line, n), k == 0); /* 1: the first, arm the flush */
        sp_buf_add(&want, line, n);
    }
    assert_int_equal(writes(&all, &largest), 0);
    assert_int_equal(sp_log_pending(), want.len);
    sp_log_flush();
    assert_int_equal(writes(&all, &largest), 1); /* ten lines, one write */
    assert_int_equal(all.len, want.len);
    assert_memory_equal(all.data, want.data, want.len);
    assert_int_equal(sp_log_pending(), 0);
    sp_log_flush(); /* nothing left: no write */
    assert_int_equal(writes(&all, &largest), 0);
    sp_buf_free(&all);
    sp_buf_free(&want);
}

static void test_a_full_buffer_is_written_whole(void **state)
{
    struct sp_buf all = {0}, want = {0};
    char line[512];
    size_t largest;
    int first = 0;

    SP_UNUSED(state);
    assert_int_equal(sp_log_buffer_init(1000), 0);
    for (int k = 0; k < 25; k++) { /* 300-byte lines: three fit, the fourth writes them */
        size_t n = make_line(line, sizeof(line), k, 300);
        first += sp_log_buffered(line, n);
        sp_buf_add(&want, line, n);
    }
    int w = writes(&all, &largest);
    assert_int_equal(w, 8);      /* 24 lines written, three by three */
    assert_int_equal(first, 9);  /* each write left an empty buffer for the next line */
    assert_true(largest <= 1000);
    sp_log_buffer_free(); /* writes the last line */
    assert_int_equal(writes(&all, &largest), 1);
    assert_int_equal(all.len, want.len);
    assert_memory_equal(all.data, want.data, want.len);
    sp_buf_free(&all);
    sp_buf_free(&want);
}

static void test_pieces_stay_within_pipe_buf(void **state)
{
    struct sp_buf all = {0}, want = {0};
    static char line[3 * PIPE_BUF];
    size_t largest;

    SP_UNUSED(state);
    assert_int_equal(sp_log_buffer_init(64 * 1024), 0);
    for (int k = 0; k < 40; k++) {
        size_t n = make_line(line, sizeof(line), k, 700 + (size_t)k * 37);
        sp_log_buffered(line, n);
        sp_buf_add(&want, line, n);
    }
    size_t big = make_line(line, sizeof(line), 99, 2 * PIPE_BUF); /* longer than a piece */
    sp_log_buffered(line, big);
    sp_buf_add(&want, line, big);
    sp_log_flush();
    int w = writes(&all, &largest);
    assert_true(w > 1);
    assert_int_equal(largest, big); /* only the long line goes beyond PIPE_BUF, on its own */
    assert_int_equal(all.len, want.len);
    assert_memory_equal(all.data, want.data, want.len);
    sp_buf_free(&all);
    sp_buf_free(&want);
}

static void test_other_lines_come_after_the_buffered_ones(void **state)
{
    struct sp_buf all = {0};
    char line[256];
    size_t largest;

    SP_UNUSED(state);
    sp_log_init(SP_LOG_INFO, "worker");
    assert_int_equal(sp_log_buffer_init(4096), 0);
    size_t n = make_line(line, sizeof(line), 1, 80);
    sp_log_buffered(line, n);
    sp_log(SP_LOG_WARN, "something happened");
    assert_int_equal(writes(&all, &largest), 2); /* the access line, then the warning */
    assert_memory_equal(all.data, line, n);
    assert_non_null(strstr(all.data + n, "something happened"));
    sp_buf_free(&all);
}

static void test_unbuffered_writes_at_once(void **state)
{
    struct sp_buf all = {0};
    char line[256];
    size_t largest;

    SP_UNUSED(state);
    assert_int_equal(sp_log_buffer_init(0), 0);
    for (int k = 0; k < 3; k++) {
        size_t n = make_line(line, sizeof(line), k, 80);
        assert_int_equal(sp_log_buffered(line, n), 0);
    }
    assert_int_equal(writes(&all, &largest), 3);
    sp_buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines_wait_until_flushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_full_buffer_is_written_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pieces_stay_within_pipe_buf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_lines_come_after_the_buffered_ones, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unbuffered_writes_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
