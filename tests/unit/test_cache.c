/* test_cache.c: core/cache.c: versions that grow on touch and flush, the store's validity
 * rules (generation, versions, time to live), replacement and eviction, entity tags and
 * If-None-Match matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"

static int setup(void **state)
{
    sp_err err;

    *state = sp_cache_new(3, 1 << 20, 60000, &err);
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    sp_cache_free(*state);
    return 0;
}

static void put(struct sp_cache *c, const char *key, uint64_t gen, uint64_t v, const char *body)
{
    sp_cache_put(c, key, gen, &v, 1, "\"e\"",
                 "X-Total-Count\0"
                 "1\0",
                 16, body, strlen(body));
}

static const struct sp_cache_entry *
get(struct sp_cache *c, const char *key, uint64_t gen, uint64_t v)
{
    return sp_cache_get(c, key, gen, &v, 1);
}

static void test_versions_grow(void **state)
{
    uint64_t a = sp_cache_version("spaces"), b = sp_cache_version("bookings");

    (void)state;
    sp_cache_touch("spaces", 6);
    assert_true(sp_cache_version("spaces") > a);
    sp_cache_touch("spacesXX", 6); /* only len bytes count */
    assert_true(sp_cache_version("spaces") > a + 1);
    a = sp_cache_version("spaces");
    sp_cache_flush_all();
    assert_true(sp_cache_version("spaces") > a);
    assert_true(sp_cache_version("bookings") > b);
}

static void test_get_put(void **state)
{
    struct sp_cache *c = *state;
    const struct sp_cache_entry *e;

    assert_null(get(c, "/a", 1, 7));
    put(c, "/a", 1, 7, "[1]");
    e = get(c, "/a", 1, 7);
    assert_non_null(e);
    assert_int_equal(e->body_len, 3);
    assert_memory_equal(e->body, "[1]", 3);
    assert_string_equal(e->headers, "X-Total-Count");
    assert_string_equal(e->headers + 14, "1");
    assert_string_equal(e->etag, "\"e\"");
    assert_null(get(c, "/a", 2, 7)); /* another generation: dropped */
    assert_null(get(c, "/a", 1, 7));
    put(c, "/a", 1, 7, "[1]");
    assert_null(get(c, "/a", 1, 8)); /* a change since */
    assert_null(get(c, "/a", 1, 7));
    put(c, "/a", 1, 7, "[1]");
    put(c, "/a", 1, 7, "[2]"); /* replaced */
    assert_memory_equal(get(c, "/a", 1, 7)->body, "[2]", 3);
    sp_cache_clear(c);
    assert_null(get(c, "/a", 1, 7));
}

static void test_oldest_evicted(void **state)
{
    struct sp_cache *c = *state;

    put(c, "/1", 1, 1, "1");
    put(c, "/2", 1, 1, "2");
    put(c, "/3", 1, 1, "3");
    put(c, "/4", 1, 1, "4");
    assert_null(get(c, "/1", 1, 1));
    assert_non_null(get(c, "/2", 1, 1));
    assert_non_null(get(c, "/3", 1, 1));
    assert_non_null(get(c, "/4", 1, 1));
}

static void test_bytes_bounded(void **state)
{
    sp_err err;
    struct sp_cache *c = sp_cache_new(100, 800, 60000, &err);
    char big[101], small[61];

    (void)state;
    memset(big, 'x', sizeof(big) - 1), big[100] = '\0';
    memset(small, 'y', sizeof(small) - 1), small[60] = '\0';
    put(c, "/big", 1, 1, big); /* above 800 / 8 with its headers: never kept */
    assert_null(get(c, "/big", 1, 1));
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "/%d", i);
        put(c, key, 1, 1, small); /* 76 bytes each: 10 fit */
    }
    assert_null(get(c, "/9", 1, 1));
    assert_non_null(get(c, "/10", 1, 1));
    assert_non_null(get(c, "/19", 1, 1));
    sp_cache_free(c);
}

static void test_ttl(void **state)
{
    sp_err err;
    struct sp_cache *c = sp_cache_new(10, 1 << 20, 0, &err), *d = sp_cache_new(10, 1 << 20, 1, &err);

    (void)state;
    put(c, "/a", 1, 1, "x"); /* ttl 0 stores nothing */
    assert_null(get(c, "/a", 1, 1));
    put(d, "/a", 1, 1, "x");
    usleep(5000);
    assert_null(get(d, "/a", 1, 1));
    sp_cache_free(c);
    sp_cache_free(d);
    sp_cache_free(NULL);
}

static void test_etag(void **state)
{
    char a[SP_CACHE_ETAG_LEN], b[SP_CACHE_ETAG_LEN];
    static const char h1[] = "A\0"
                             "1\0"
                             "B\0"
                             "2";
    static const char h2[] = "B\0"
                             "2\0"
                             "A\0"
                             "1";

    (void)state;
    sp_cache_etag("[1,2,3]", 7, h1, sizeof(h1), a);
    sp_cache_etag("[1,2,3]", 7, h2, sizeof(h2), b);
    assert_string_equal(a, b); /* header order does not count */
    assert_int_equal(strlen(a), 18);
    assert_true(a[0] == '"' && a[17] == '"');
    sp_cache_etag("[1,2,4]", 7, h1, sizeof(h1), b);
    assert_string_not_equal(a, b);
    sp_cache_etag("[1,2,3]", 7,
                  "A\0"
                  "2",
                  4, b);
    assert_string_not_equal(a, b);

    assert_true(sp_cache_etag_matches("\"abc\"", "\"abc\""));
    assert_true(sp_cache_etag_matches("W/\"abc\"", "\"abc\""));
    assert_true(sp_cache_etag_matches("\"x\", W/\"abc\"", "\"abc\""));
    assert_true(sp_cache_etag_matches("*", "\"abc\""));
    assert_false(sp_cache_etag_matches("\"abcd\"", "\"abc\""));
    assert_false(sp_cache_etag_matches("abc", "\"abc\""));
    assert_false(sp_cache_etag_matches("\"abc", "\"abc\""));
    assert_false(sp_cache_etag_matches("", "\"abc\""));
    assert_false(sp_cache_etag_matches(NULL, "\"abc\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions_grow),
        cmocka_unit_test_setup_teardown(test_get_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_evicted, setup, teardown),
        cmocka_unit_test(test_bytes_bounded),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_etag),
    };

    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
