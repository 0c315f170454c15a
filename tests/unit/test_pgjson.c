/* test_pgjson.c: core/pgjson.c's jsonb writer (sp_pgjson_jsonb): PostgreSQL's jsonb text
 * written as the Lua encoder writes what the decoder reads from it, checked against that
 * round trip itself; and json.c's float writer it shares with the encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <string.h>

#include "json.h"
#include "pgjson.h"

static void expect_jsonb(const char *in, const char *want)
{
    struct sp_buf out = {0};

    sp_buf_add(&out, "x", 1); /* appends after what is there */
    assert_int_equal(sp_pgjson_jsonb(in, strlen(in), &out), 0);
    assert_string_equal(out.data + 1, want);
    sp_buf_free(&out);
}

/* The same text as spacer.json.encode(spacer.json.decode(in)): no Lua round trip needed. */
static void expect_round_trip(lua_State *L, const char *in)
{
    struct sp_buf fast = {0}, slow = {0};
    sp_err err;

    assert_int_equal(sp_json_decode(L, in, strlen(in), SP_JSON_MAX_DEPTH, &err), 0);
    assert_int_equal(sp_json_encode(L, -1, &slow, SP_JSON_MAX_DEPTH, &err), 0);
    lua_pop(L, 1);
    assert_int_equal(sp_pgjson_jsonb(in, strlen(in), &fast), 0);
    assert_string_equal(fast.data, slow.data);
    sp_buf_free(&fast);
    sp_buf_free(&slow);
}

static void test_jsonb_compact(void **state)
{
    (void)state;
    expect_jsonb("{\"id\": 1, \"name\": \"Ann\", \"email\": null}",
                 "{\"id\":1,\"name\":\"Ann\",\"email\":null}");
    expect_jsonb("[]", "[]");
    expect_jsonb("{}", "{}");
    expect_jsonb("[[], {}, [[true, false]]]", "[[],{},[[true,false]]]");
    expect_jsonb("{\"a b\": \"c, d: e\"}", "{\"a b\":\"c, d: e\"}"); /* spaces in strings */
}

static void test_jsonb_strings(void **state)
{
    (void)state;
    /* PostgreSQL writes \b and \f; the encoder writes \u0008 and \u000c; the rest alike */
    expect_jsonb("[\"a\\bb\\fc\"]", "[\"a\\u0008b\\u000cc\"]");
    expect_jsonb("[\"q\\\" s\\\\ n\\n r\\r t\\t u\\u001f\"]",
                 "[\"q\\\" s\\\\ n\\n r\\r t\\t u\\u001f\"]");
    expect_jsonb("[\"\\\\b\"]", "[\"\\\\b\"]"); /* an escaped backslash, then a b */
    expect_jsonb("[\"\xc3\xa9 \xe2\x9c\x93\"]", "[\"\xc3\xa9 \xe2\x9c\x93\"]");
}

static void test_jsonb_numbers(void **state)
{
    (void)state;
    expect_jsonb("[0, -0, 12, -7, 9223372036854775807]", "[0,0,12,-7,9223372036854775807]");
    expect_jsonb("[9223372036854775808]", "[9.2233720368547758e+18]");
    /* integers of up to 18 digits are copied, longer ones read: the same text either way */
    expect_jsonb("[123456789012345678, -123456789012345678, 1234567890123456789, -1]",
                 "[123456789012345678,-123456789012345678,1234567890123456789,-1]");
    expect_jsonb("{\"id\": 7, \"n\": -0}", "{\"id\":7,\"n\":0}");
    expect_jsonb("[0.10, 2.50, 7.0, -0.0, 340.00]", "[0.1,2.5,7.0,-0.0,340.0]");
    expect_jsonb("[1e3, 1.5E-7]", "[1000.0,1.5e-07]");
    char big[400] = "[1";
    memset(big + 2, '0', 380);
    strcpy(big + 382, "]");
    expect_jsonb(big, "[null]"); /* beyond a double: as the encoder writes inf */
}

static void test_jsonb_matches_the_lua_round_trip(void **state)
{
    lua_State *L = luaL_newstate();
    static const char *const cases[] = {
        "{\"n\": [0, -0, 0.10, 2.50, 7.0, 1e400, -12345678901234567890, 9223372036854775807, "
        "9223372036854775808, true, false, null, {}, [], [[]], {\"a\": {\"b\": []}}]}",
        "{\"name\": \"bs\\b ff\\f nl\\n q\\\" bsl\\\\ u\\u001f \xc3\xa9\"}",
        "[{\"code\": \"hours\"}, 12345, 0.001, 123.45, 1.1, 100000000000000000000.5]",
        "{\"lines\": [[1, 2], [3.25, \"x\"]]}",
        "[123456789012345678, -123456789012345678, 1234567890123456789, -0, 0, -1, 10]",
    };

    (void)state;
    assert_non_null(L);
    sp_json_init(L); /* what marks decoded arrays */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_round_trip(L, cases[i]);
    lua_close(L);
}

static void test_jsonb_rejects(void **state)
{
    static const char *const bad[] = {"[\"open", "[nope]", "[1, \"a\\", "{\"a\": tru}", "[@]"};
    struct sp_buf out = {0};

    (void)state;
    sp_buf_add(&out, "keep", 4);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sp_pgjson_jsonb(bad[i], strlen(bad[i]), &out), -1);
        assert_string_equal(out.data, "keep"); /* nothing appended */
    }
    sp_buf_free(&out);
}

static void test_add_double(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {{500, "500.0"},
                 {394.4, "394.4"},
                 {0.1, "0.1"},
                 {-0.0, "-0.0"},
                 {1e20, "1e+20"},
                 {1.0 / 3, "0.33333333333333331"},
                 {0.1 + 0.2, "0.30000000000000004"}};
    struct sp_buf out = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out.len = 0;
        sp_json_add_double(&out, cases[i].v);
        assert_string_equal(out.data, cases[i].text);
    }
    out.len = 0;
    sp_json_add_double(&out, INFINITY);
    assert_string_equal(out.data, "null");
    sp_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonb_compact),
        cmocka_unit_test(test_jsonb_strings),
        cmocka_unit_test(test_jsonb_numbers),
        cmocka_unit_test(test_jsonb_matches_the_lua_round_trip),
        cmocka_unit_test(test_jsonb_rejects),
        cmocka_unit_test(test_add_double),
    };

    return cmocka_run_group_tests_name("pgjson", tests, NULL, NULL);
}
