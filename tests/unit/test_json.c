/* test_json.c: core/json.c: JSON text <-> Lua values on the stack: types, integers beyond
 * 2^53, escapes and UTF-8, what must be rejected, depth limits, and encoding of Lua tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define DEPTH SP_JSON_MAX_DEPTH

/* ---- fixture and helpers ------------------------------------------------- */

static int setup(void **state)
{
    lua_State *L = luaL_newstate();

    if (L == NULL)
        return -1;
    luaL_openlibs(L);
    sp_json_init(L);
    sp_json_push_null(L);
    lua_setglobal(L, "null"); /* for the Lua expressions the checks below evaluate */
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Decodes s[0..len) and asserts success: exactly one value is pushed. */
static void decode_n(lua_State *L, const char *s, size_t len)
{
    sp_err err = {{0}};
    int top = lua_gettop(L);

    if (sp_json_decode(L, s, len, DEPTH, &err) != 0)
        fail_msg("decoding %s failed: %s", s, err.msg);
    assert_int_equal(lua_gettop(L), top + 1);
}

static void decode(lua_State *L, const char *s)
{
    decode_n(L, s, strlen(s));
}

/* Decodes text, binds it to the global v and asserts the Lua expression expr holds. */
#define CHECK(L, text, expr) check_expr(L, text, expr, __LINE__)
static void check_expr(lua_State *L, const char *text, const char *expr, int line)
{
    char chunk[1024];
    int top = lua_gettop(L);

    decode(L, text);
    lua_setglobal(L, "v");
    snprintf(chunk, sizeof(chunk), "return %s", expr);
    if (luaL_dostring(L, chunk) != 0)
        fail_msg("line %d: %s: %s", line, expr, lua_tostring(L, -1));
    if (!lua_toboolean(L, -1))
        fail_msg("line %d: for %s, expected: %s", line, text, expr);
    lua_settop(L, top);
}

/* Asserts that s[0..len) is rejected, nothing is pushed, and the error mentions what. */
static void reject_n(lua_State *L, const char *s, size_t len, int depth, const char *what)
{
    sp_err err = {{0}};
    int top = lua_gettop(L);

    if (sp_json_decode(L, s, len, depth, &err) == 0)
        fail_msg("decoding \"%.*s\" should fail", (int)(len > 60 ? 60 : len), s);
    assert_int_equal(lua_gettop(L), top);
    assert_non_null(strstr(err.msg, "invalid json at byte "));
    if (what != NULL && strstr(err.msg, what) == NULL)
        fail_msg("\"%.*s\": error \"%s\" does not mention \"%s\"", (int)(len > 60 ? 60 : len), s,
                 err.msg, what);
}

static void reject(lua_State *L, const char *s, const char *what)
{
    reject_n(L, s, strlen(s), DEPTH, what);
}

/* Encodes the value at the top of the stack (and pops it); the caller frees the text. */
static char *encode_top(lua_State *L)
{
    struct sp_buf out = {0};
    sp_err err = {{0}};
    int top = lua_gettop(L);

    if (sp_json_encode(L, -1, &out, DEPTH, &err) != 0)
        fail_msg("encoding failed: %s", err.msg);
    assert_int_equal(lua_gettop(L), top);
    lua_pop(L, 1);
    return out.data;
}

/* Runs the Lua chunk (which returns one value) and pushes its value. */
static void push_lua(lua_State *L, const char *chunk)
{
    if (luaL_dostring(L, chunk) != 0)
        fail_msg("%s: %s", chunk, lua_tostring(L, -1));
}

#define ENC(L, chunk, want) enc_lua(L, chunk, want, __LINE__)
static void enc_lua(lua_State *L, const char *chunk, const char *want, int line)
{
    push_lua(L, chunk);
    char *got = encode_top(L);
    if (strcmp(got, want) != 0) {
        fail_msg("line %d: %s encoded as %s, expected %s", line, chunk, got, want);
    }
    free(got);
}

/* Asserts encoding the chunk's value fails with an error containing what. */
static void enc_fails(lua_State *L, const char *chunk, const char *what)
{
    struct sp_buf out = {0};
    sp_err err = {{0}};

    push_lua(L, chunk);
    int top = lua_gettop(L);
    if (sp_json_encode(L, -1, &out, DEPTH, &err) == 0)
        fail_msg("%s encoded as %s, expected an error", chunk, out.data);
    assert_int_equal(lua_gettop(L), top);
    if (strstr(err.msg, what) == NULL)
        fail_msg("%s: error \"%s\" does not mention \"%s\"", chunk, err.msg, what);
    lua_pop(L, 1);
    sp_buf_free(&out);
}

/* decode(text) then encode gives text back. */
static void round_trip(lua_State *L, const char *text)
{
    decode(L, text);
    char *got = encode_top(L);
    if (strcmp(got, text) != 0)
        fail_msg("round trip of %s gave %s", text, got);
    free(got);
}

/* open n times, then mid, then close n times; the caller frees. */
static char *nested_around(const char *open, const char *mid, const char *close, int n)
{
    size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
    char *s = malloc((lo + lc) * (size_t)n + lm + 1), *p = s;

    assert_non_null(s);
    for (int i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, mid, lm);
    p += lm;
    for (int i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static char *nested(const char *open, const char *close, int n)
{
    return nested_around(open, "", close, n);
}

/* ---- decoding ------------------------------------------------------------ */

static void test_decode_object(void **state)
{
    lua_State *L = *state;

    decode(L, "{\"name\":\"Room A\",\"seats\":12,\"open\":true,\"closed\":false,\"tax\":0.16}");
    assert_true(lua_istable(L, -1));
    assert_int_equal(lua_getfield(L, -1, "name"), LUA_TSTRING);
    assert_string_equal(lua_tostring(L, -1), "Room A");
    lua_pop(L, 1);
    assert_int_equal(lua_getfield(L, -1, "seats"), LUA_TNUMBER);
    assert_true(lua_isinteger(L, -1));
    assert_int_equal(lua_tointeger(L, -1), 12);
    lua_pop(L, 1);
    assert_int_equal(lua_getfield(L, -1, "open"), LUA_TBOOLEAN);
    assert_true(lua_toboolean(L, -1));
    lua_pop(L, 1);
    assert_int_equal(lua_getfield(L, -1, "closed"), LUA_TBOOLEAN);
    assert_false(lua_toboolean(L, -1));
    lua_pop(L, 1);
    assert_int_equal(lua_getfield(L, -1, "tax"), LUA_TNUMBER);
    assert_false(lua_isinteger(L, -1));
    assert_true(lua_tonumber(L, -1) == 0.16);
    lua_pop(L, 1);
    /* an object is a plain table: no array metatable */
    assert_int_equal(lua_getmetatable(L, -1), 0);
    lua_pop(L, 1);
    assert_int_equal(lua_gettop(L), 0);

    CHECK(L, " { \"a\" : 1 , \"b\" : [ ] } ", "v.a == 1 and #v.b == 0");
    CHECK(L, "{\"a\":1,\"a\":2}", "v.a == 2"); /* the last duplicate wins */
    CHECK(L, "{\"\":\"empty key\"}", "v[''] == 'empty key'");
    CHECK(L, "{\"1\":\"x\"}", "v['1'] == 'x' and v[1] == nil"); /* keys stay strings */
}

static void test_decode_arrays_and_nesting(void **state)
{
    lua_State *L = *state;

    CHECK(L, "[1,2,3]", "#v == 3 and v[1] == 1 and v[2] == 2 and v[3] == 3");
    CHECK(L, "[1,[2,[3,[4]]]]", "v[2][2][2][1] == 4 and #v[2][2] == 2");
    CHECK(L, "{\"a\":{\"b\":{\"c\":[{\"d\":\"deep\"}]}}}", "v.a.b.c[1].d == 'deep'");
    CHECK(L, "[\"a\",{\"k\":[true,false]},null,-7]",
          "v[1] == 'a' and v[2].k[1] == true and v[2].k[2] == false and v[3] == null and "
          "v[4] == -7 and #v == 4");
    /* arrays carry the array metatable, nested ones too */
    CHECK(L, "[[1],{\"x\":[]}]",
          "getmetatable(v) ~= nil and getmetatable(v) == getmetatable(v[1]) and "
          "getmetatable(v) == getmetatable(v[2].x) and getmetatable(v[2]) == nil");
    CHECK(L, "\t\r\n [ 1 ,\n2 ] \n", "#v == 2");
    CHECK(L, "\"just a string\"", "v == 'just a string'");
    CHECK(L, "true", "v == true");
    CHECK(L, "false", "v == false");
}

static void test_decode_empty_array_vs_object(void **state)
{
    lua_State *L = *state;

    round_trip(L, "[]");
    round_trip(L, "{}");
    round_trip(L, "[[],{},[{}]]");
    round_trip(L, "{\"list\":[]}");
    CHECK(L, "[]", "type(v) == 'table' and next(v) == nil and getmetatable(v) ~= nil");
    CHECK(L, "{}", "type(v) == 'table' and next(v) == nil and getmetatable(v) == nil");

    /* the helpers a C caller uses to build arrays */
    sp_json_new_array(L, 4);
    char *s = encode_top(L);
    assert_string_equal(s, "[]");
    free(s);
    lua_newtable(L);
    sp_json_mark_array(L, -1);
    s = encode_top(L);
    assert_string_equal(s, "[]");
    free(s);
    lua_newtable(L);
    s = encode_top(L);
    assert_string_equal(s, "{}");
    free(s);
}

static void test_decode_null(void **state)
{
    lua_State *L = *state;

    decode(L, "null");
    assert_true(sp_json_is_null(L, -1));
    assert_true(lua_islightuserdata(L, -1));
    lua_pop(L, 1);
    /* null stays a value inside containers: the key exists */
    decode(L, "{\"a\":null}");
    assert_int_equal(lua_getfield(L, -1, "a"), LUA_TLIGHTUSERDATA);
    assert_true(sp_json_is_null(L, -1));
    lua_pop(L, 2);
    CHECK(L, "[null,null,1]", "#v == 3 and v[1] == null and v[2] == null and v[3] == 1");

    /* only the sentinel is null */
    lua_pushnil(L);
    assert_false(sp_json_is_null(L, -1));
    lua_pushlightuserdata(L, L);
    assert_false(sp_json_is_null(L, -1));
    lua_pushboolean(L, 0);
    assert_false(sp_json_is_null(L, -1));
    lua_pop(L, 3);
    sp_json_push_null(L);
    char *s = encode_top(L);
    assert_string_equal(s, "null");
    free(s);
    ENC(L, "return {b = {null, 2}}", "{\"b\":[null,2]}");
}

static void test_decode_integers(void **state)
{
    lua_State *L = *state;
    static const struct {
        const char *text;
        long long want;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"1", 1},
        {"-1", -1},
        {"9007199254740993", 9007199254740993LL}, /* 2^53 + 1: a double would lose it */
        {"-9007199254740993", -9007199254740993LL},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };

    for (size_t i = 0; i < SP_ARRAY_LEN(cases); i++) {
        decode(L, cases[i].text);
        if (!lua_isinteger(L, -1))
            fail_msg("%s did not decode as an integer", cases[i].text);
        assert_int_equal(lua_tointeger(L, -1), cases[i].want);
        lua_pop(L, 1);
    }
    CHECK(L, "[9007199254740993]", "math.type(v[1]) == 'integer' and v[1] == 9007199254740993");
    CHECK(L, "9223372036854775807", "v == math.maxinteger");
    CHECK(L, "-9223372036854775808", "v == math.mininteger");
    /* beyond 64 bits: a float, as Lua's own reader would give */
    CHECK(L, "18446744073709551616", "math.type(v) == 'float' and v == 2^64");
    CHECK(L, "9223372036854775808", "math.type(v) == 'float' and v == 2^63");
    CHECK(L, "-9223372036854775809", "math.type(v) == 'float' and v == -2^63");
    round_trip(L, "9007199254740993");
    round_trip(L, "9223372036854775807");
    round_trip(L, "-9223372036854775808");
    round_trip(L, "[0,-1,12345678901234567]");
}

static void test_decode_floats(void **state)
{
    lua_State *L = *state;

    CHECK(L, "1.5", "math.type(v) == 'float' and v == 1.5");
    CHECK(L, "-0.25", "math.type(v) == 'float' and v == -0.25");
    CHECK(L, "1e3", "math.type(v) == 'float' and v == 1000.0");
    CHECK(L, "1E3", "math.type(v) == 'float' and v == 1000.0");
    CHECK(L, "2.5e-1", "v == 0.25");
    CHECK(L, "1e+2", "math.type(v) == 'float' and v == 100.0");
    CHECK(L, "0.0", "math.type(v) == 'float' and v == 0");
    CHECK(L, "-0.0", "math.type(v) == 'float' and 1/v == -math.huge");
    CHECK(L, "123456789.125", "v == 123456789.125");

    decode(L, "1e3");
    char *s = encode_top(L);
    assert_string_equal(s, "1000.0"); /* a float stays a float */
    free(s);
    round_trip(L, "1.5");
    round_trip(L, "-0.25");
    round_trip(L, "0.1");
    round_trip(L, "-0.0");
    round_trip(L, "1e+20");
    round_trip(L, "1.5e-07");
    round_trip(L, "[1000.0,2.0,0.5]");
}

/* Valid JSON numbers of any length decode; long ones are floats unless a 64-bit integer. */
static void test_decode_long_numbers(void **state)
{
    lua_State *L = *state;
    char text[700];

    CHECK(L, "{\"amount\": 0.10000000000000000000000000000000000000000000000000000000000000001}",
          "math.type(v.amount) == 'float' and v.amount == 0.1");
    /* 64 characters exactly, and a long way beyond */
    CHECK(L, "1.00000000000000000000000000000000000000000000000000000000000000",
          "math.type(v) == 'float' and v == 1.0");
    CHECK(L, "-0.0000000000000000000000000000000000000000000000000000000000000000000025e2",
          "v == -2.5e-67");
    CHECK(L, "[9223372036854775807, -9223372036854775808]",
          "math.type(v[1]) == 'integer' and v[2] == math.mininteger");
    memset(text, '9', 600);
    text[600] = '\0';
    CHECK(L, text, "math.type(v) == 'float' and v == 1e600"); /* inf, as Lua reads it */
    memcpy(text, "[-1", 3);
    memset(text + 3, '0', 80);
    memcpy(text + 83, ",2]", 4);
    CHECK(L, text, "math.type(v[1]) == 'float' and v[1] == -1e80 and v[2] == 2");
    memcpy(text, "[0.", 3);
    memset(text + 3, '0', 300);
    memcpy(text + 303, "1e300]", 7);
    CHECK(L, text, "v[1] == 1e-1");
    reject(L, "[1.000000000000000000000000000000000000000000000000000000000000000000e]",
           "bad exponent");
}

static void test_decode_string_escapes(void **state)
{
    lua_State *L = *state;
    size_t len;
    const char *s;

    decode(L, "\"a\\nb\\tc\\\"d\\\\e\\/f\\u00e9\\b\\f\\r\"");
    s = lua_tolstring(L, -1, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(s, "a\nb\tc\"d\\e/f\xc3\xa9\b\f\r", 16);
    lua_pop(L, 1);

    decode(L, "\"\\ud83d\\ude00\""); /* U+1F600 */
    s = lua_tolstring(L, -1, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "\xf0\x9f\x98\x80", 4);
    lua_pop(L, 1);

    decode(L, "\"x\\uD83D\\uDE00y\\u20AC\\u0041\""); /* upper case hex too */
    s = lua_tolstring(L, -1, &len);
    assert_int_equal(len, 10);
    assert_memory_equal(s,
                        "x\xf0\x9f\x98\x80y\xe2\x82\xac"
                        "A",
                        10);
    lua_pop(L, 1);

    decode(L, "\"a\\u0000b\""); /* an escaped NUL is kept */
    s = lua_tolstring(L, -1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 3);
    lua_pop(L, 1);

    /* raw UTF-8 (no escapes) passes through, on both the fast and the escape path */
    CHECK(L, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "v == 'caf\\u{e9} \\u{1f600}'");
    CHECK(L, "\"\\n caf\xc3\xa9\"", "v == '\\n caf\\u{e9}'");
    CHECK(L, "\"\"", "v == ''");
    CHECK(L, "{\"k\\u00e9y\":1}", "v['k\\u{e9}y'] == 1");
    CHECK(L, "\"\x7f\"", "v == '\\127'"); /* DEL is not a control character for JSON */
}

static void test_decode_rejects_bad_utf8(void **state)
{
    lua_State *L = *state;
    static const char *bad[] = {
        "\"\xff\"",
        "\"\xfe\"",
        "\"\xc0\xaf\"",         /* overlong '/' */
        "\"\xe0\x80\xaf\"",     /* overlong, three bytes */
        "\"\xed\xa0\x80\"",     /* U+D800 written in UTF-8 */
        "\"\xed\xbf\xbf\"",     /* U+DFFF */
        "\"\xf4\x90\x80\x80\"", /* above U+10FFFF */
        "\"\x80\"",             /* a lone continuation byte */
        "\"\xe2\x82\"",         /* truncated */
        "\"abc\xc3\"",          /* truncated at the end */
        "\"\\n\xff\"",          /* after an escape (the slow path) */
        "\"\\u00e9\xc0\xaf\"",
        "{\"\xff\":1}", /* keys too */
    };

    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++)
        reject(L, bad[i], "UTF-8");
}

static void test_decode_rejects_bad_escapes(void **state)
{
    lua_State *L = *state;

    reject(L, "\"\\ud800\"", "surrogate");
    reject(L, "\"\\ud800x\"", "surrogate");
    reject(L, "\"\\ud800\\u0041\"", "surrogate");
    reject(L, "\"\\ud800\\ud800\"", "surrogate");
    reject(L, "\"\\udc00\"", "surrogate");
    reject(L, "\"\\ude00\\ud83d\"", "surrogate"); /* the pair reversed */
    reject(L, "\"\\ud83d\\ude0\"", "surrogate");
    reject(L, "\"\\u12G4\"", "\\u escape");
    reject(L, "\"\\u12\"", "\\u escape");
    reject(L, "\"\\u", "\\u escape");
    reject(L, "\"\\x41\"", "bad escape");
    reject(L, "\"\\'\"", "bad escape");
    reject(L, "\"\\", "unterminated");
    reject(L, "\"abc", "unterminated");
    reject(L, "\"\\nabc", "unterminated");
}

static void test_decode_rejects_control_characters(void **state)
{
    lua_State *L = *state;

    reject(L, "\"a\nb\"", "control character");
    reject(L, "\"\t\"", "control character");
    reject(L, "\"\x01\"", "control character");
    reject(L, "\"\x1f\"", "control character");
    reject(L, "\"\\n\r\"", "control character");            /* on the escape path too */
    reject_n(L, "\"a\0b\"", 5, DEPTH, "control character"); /* a raw NUL */
}

static void test_decode_rejects_malformed(void **state)
{
    lua_State *L = *state;
    static const char *bad[] = {
        "",      "   ",     "[",         "[1",
        "[1,",   "[1,]",    "[,1]",      "[1 2]",
        "{",     "{\"a\"",  "{\"a\":",   "{\"a\":1,}",
        "{a:1}", "{'a':1}", "{\"a\" 1}", "{\"a\":1 \"b\":2}",
        "{1:2}", "]",       "}",         "nul",
        "tru",   "True",    "NULL",      "undefined",
        "'x'",   "+1",      ".5",        "1.",
        "1.e3",  "-",       "1e",        "1e+",
        "0x10",  "NaN",     "Infinity",  "-Infinity",
        "\f1",   "\v1",
    };

    for (size_t i = 0; i < SP_ARRAY_LEN(bad); i++)
        reject(L, bad[i], NULL);
}

static void test_decode_rejects_trailing_garbage(void **state)
{
    lua_State *L = *state;

    reject(L, "1 2", "trailing characters");
    reject(L, "{} x", "trailing characters");
    reject(L, "[1],", "trailing characters");
    reject(L, "truex", "trailing characters");
    reject(L, "nullnull", "trailing characters");
    reject(L, "\"a\"\"b\"", "trailing characters");
    reject(L, "[]]", "trailing characters");
    reject_n(L, "1\0", 2, DEPTH, "trailing characters");

    /* the position is reported */
    sp_err err = {{0}};
    assert_int_equal(sp_json_decode(L, "[1,x]", 5, DEPTH, &err), -1);
    assert_string_equal(err.msg, "invalid json at byte 3: bad number");
    assert_int_equal(sp_json_decode(L, "[1] 2", 5, DEPTH, &err), -1);
    assert_string_equal(err.msg, "invalid json at byte 4: trailing characters");

    /* len, not the NUL, ends the text */
    decode_n(L, "[1,2]xyz", 5);
    lua_pop(L, 1);
    decode_n(L, "123", 2);
    assert_int_equal(lua_tointeger(L, -1), 12);
    lua_pop(L, 1);
    reject_n(L, "\"abc\"", 4, DEPTH, "unterminated");
    reject_n(L, "true", 3, DEPTH, NULL);
}

static void test_decode_rejects_leading_zeros(void **state)
{
    lua_State *L = *state;

    reject(L, "01", "leading zero");
    reject(L, "00", "leading zero");
    reject(L, "-01", "leading zero");
    reject(L, "[007]", "leading zero");
    reject(L, "00.5", "leading zero");
    CHECK(L, "0.5", "v == 0.5");
    CHECK(L, "-0.5", "v == -0.5");
    CHECK(L, "0e1", "v == 0.0 and math.type(v) == 'float'");
    CHECK(L, "[0,10,100]", "v[1] == 0 and v[2] == 10 and v[3] == 100");
}

static void test_decode_depth_limit(void **state)
{
    lua_State *L = *state;
    char *ok = nested("[", "]", DEPTH), *deep = nested("[", "]", DEPTH + 1);

    decode(L, ok);
    lua_pop(L, 1);
    reject(L, deep, "nested too deeply");
    free(ok);
    free(deep);

    ok = nested_around("{\"a\":", "1", "}", DEPTH);
    deep = nested_around("{\"a\":", "1", "}", DEPTH + 1);
    decode(L, ok);
    lua_pop(L, 1);
    reject(L, deep, "nested too deeply");
    free(ok);
    free(deep);

    /* mixed: objects and arrays count alike */
    ok = nested("{\"a\":[", "]}", DEPTH / 2);
    decode(L, ok);
    lua_pop(L, 1);
    free(ok);
    deep = nested("{\"a\":[", "]}", DEPTH / 2 + 1);
    reject(L, deep, "nested too deeply");
    free(deep);

    /* the caller chooses the limit */
    reject_n(L, "[[[1]]]", 7, 2, "nested too deeply");
    sp_err err = {{0}};
    assert_int_equal(sp_json_decode(L, "[[[1]]]", 7, 3, &err), 0);
    lua_pop(L, 1);
    assert_int_equal(sp_json_decode(L, "1", 1, 0, &err), 0); /* scalars need no depth */
    lua_pop(L, 1);
    reject_n(L, "[]", 2, 0, "nested too deeply");
}

static void test_decode_huge_nesting(void **state)
{
    lua_State *L = *state;
    size_t n = 100000;
    char *s = malloc(n);

    assert_non_null(s);
    memset(s, '[', n);
    reject_n(L, s, n, DEPTH, "nested too deeply");
    memset(s, '{', n);
    reject_n(L, s, n, DEPTH, NULL);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 2 ? '[' : '{';
    reject_n(L, s, n, DEPTH, NULL);
    free(s);
    s = nested("[", "]", 100000);
    reject(L, s, "nested too deeply");
    free(s);
    assert_int_equal(lua_gettop(L), 0);
}

static void test_round_trips(void **state)
{
    lua_State *L = *state;
    static const char *canonical[] = {
        "0",
        "-1",
        "true",
        "false",
        "null",
        "\"\"",
        "\"plain\"",
        "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"",
        "\"line\\nbreak\\ttab \\\"quoted\\\" back\\\\slash\"",
        "\"\\u0001\\u001f\\u0000\"",
        "[1,2,3]",
        "[1,-2,3.25,\"s\",null,true,false,[],{}]",
        "{\"k\":{\"n\":[{\"x\":\"\\u0001\\n\"}]}}",
        "{\"id\":9007199254740993}",
        "{\"price\":1500.0}",
        "[[[[[[\"deep\"]]]]]]",
    };

    for (size_t i = 0; i < SP_ARRAY_LEN(canonical); i++)
        round_trip(L, canonical[i]);

    /* non-canonical input comes back canonical */
    decode(L, " [ 1 , \"\\/\" , \"\\u00e9\" , 1E2 ] ");
    char *s = encode_top(L);
    assert_string_equal(s, "[1,\"/\",\"\xc3\xa9\",100.0]");
    free(s);

    /* several keys: iteration order is Lua's, so check both orders */
    decode(L, "{\"a\":1,\"b\":[true]}");
    s = encode_top(L);
    if (strcmp(s, "{\"a\":1,\"b\":[true]}") != 0 && strcmp(s, "{\"b\":[true],\"a\":1}") != 0)
        fail_msg("unexpected encoding %s", s);
    free(s);
}

/* ---- encoding ------------------------------------------------------------ */

static void test_encode_tables(void **state)
{
    lua_State *L = *state;

    ENC(L, "return {1, 2, 3}", "[1,2,3]");
    ENC(L, "return {'a', true, 1.5}", "[\"a\",true,1.5]");
    ENC(L, "return {name = 'Room'}", "{\"name\":\"Room\"}");
    ENC(L, "return {list = {1, {2, {3}}}}", "{\"list\":[1,[2,[3]]]}");
    ENC(L, "return {{a = {}}}", "[{\"a\":{}}]");
    ENC(L, "return {[1.5] = 'x'}", "{\"1.5\":\"x\"}");
    ENC(L, "return {[2] = 'b'}", "{\"2\":\"b\"}"); /* not a sequence from 1 */

    /* mixed: an object whose numeric keys become strings */
    push_lua(L, "return {10, 20, x = 30}");
    char *s = encode_top(L);
    decode(L, s);
    lua_setglobal(L, "v");
    free(s);
    push_lua(L, "local n = 0 for _ in pairs(v) do n = n + 1 end "
                "return getmetatable(v) == nil and n == 3 and v['1'] == 10 and v['2'] == 20 "
                "and v.x == 30");
    assert_true(lua_toboolean(L, -1));
    lua_pop(L, 1);

    /* a sparse table is an object, holes are not invented */
    push_lua(L, "return {[1] = 'a', [3] = 'c'}");
    s = encode_top(L);
    decode(L, s);
    lua_setglobal(L, "v");
    free(s);
    push_lua(L, "return v['1'] == 'a' and v['3'] == 'c' and v['2'] == nil");
    assert_true(lua_toboolean(L, -1));
    lua_pop(L, 1);

    /* integer keys outside 1..n are not dropped by calling the table an array */
    push_lua(L, "local t = {'a', 'b', 'c'} t[0] = 'zero' t[1] = nil return t"); /* #t is 3 */
    s = encode_top(L);
    assert_non_null(strstr(s, "\"0\":\"zero\""));
    assert_non_null(strstr(s, "\"2\":\"b\""));
    assert_non_null(strstr(s, "\"3\":\"c\""));
    free(s);
    push_lua(L, "local t = {'a', 'b'} t[-1] = 'neg' return t");
    s = encode_top(L);
    assert_non_null(strstr(s, "\"-1\":\"neg\""));
    free(s);

    /* a marked array with holes: nil becomes null up to its length */
    push_lua(L, "return {1, nil, 3}");
    sp_json_mark_array(L, -1);
    s = encode_top(L);
    assert_string_equal(s, "[1,null,3]");
    free(s);

    /* raw access: metamethods do not leak into the text */
    ENC(L, "return setmetatable({}, {__index = function() return 1 end})", "{}");
    ENC(L, "return setmetatable({5}, {__len = function() return 9 end})", "[5]");

    /* non-string keys that JSON cannot express */
    enc_fails(L, "return {[true] = 1}", "object key of type boolean");
    enc_fails(L, "return {[{}] = 1}", "object key of type table");
}

static void test_encode_scalars(void **state)
{
    lua_State *L = *state;

    ENC(L, "return nil", "null");
    ENC(L, "return true", "true");
    ENC(L, "return false", "false");
    ENC(L, "return 0", "0");
    ENC(L, "return -17", "-17");
    ENC(L, "return math.maxinteger", "9223372036854775807");
    ENC(L, "return math.mininteger", "-9223372036854775808");
    ENC(L, "return 1000.0", "1000.0");
    ENC(L, "return 0.0", "0.0");
    ENC(L, "return -0.0", "-0.0");
    ENC(L, "return 0.1", "0.1");
    ENC(L, "return 1e300", "1e+300");
    ENC(L, "return 2^53", "9007199254740992.0");
    ENC(L, "return 'x'", "\"x\"");

    /* floats that need 17 digits survive */
    push_lua(L, "return 1/3");
    char *s = encode_top(L);
    decode(L, s);
    lua_setglobal(L, "v");
    free(s);
    push_lua(L, "return v == 1/3");
    assert_true(lua_toboolean(L, -1));
    lua_pop(L, 1);

    /* JSON has no NaN or infinity */
    ENC(L, "return 0/0", "null");
    ENC(L, "return math.huge", "null");
    ENC(L, "return {0/0, math.huge, -math.huge, 1}", "[null,null,null,1]");
}

static void test_encode_rejects(void **state)
{
    lua_State *L = *state;

    enc_fails(L, "return print", "value of type function");
    enc_fails(L, "return {1, print}", "value of type function");
    enc_fails(L, "return {f = function() end}", "value of type function");
    enc_fails(L, "return coroutine.create(print)", "value of type thread");
    enc_fails(L, "return io.stdout", "value of type userdata");

    /* light userdata other than null */
    struct sp_buf out = {0};
    sp_err err = {{0}};
    lua_pushlightuserdata(L, &out);
    assert_int_equal(sp_json_encode(L, -1, &out, DEPTH, &err), -1);
    assert_non_null(strstr(err.msg, "userdata"));
    lua_pop(L, 1);
    sp_buf_free(&out);
}

static void test_encode_depth(void **state)
{
    lua_State *L = *state;
    char chunk[200];

    /* 64 tables deep is fine, 65 is not */
    snprintf(chunk, sizeof(chunk), "local t = {} for i = 2, %d do t = {t} end return t", DEPTH);
    push_lua(L, chunk);
    char *s = encode_top(L);
    assert_int_equal(strlen(s), 2 * (DEPTH - 1) + 2);
    assert_memory_equal(s + DEPTH - 1, "{}", 2);
    free(s);
    snprintf(chunk, sizeof(chunk), "local t = {} for i = 2, %d do t = {t} end return t", DEPTH + 1);
    enc_fails(L, chunk, "nested deeper than 64");

    /* a cycle ends at the limit instead of looping */
    enc_fails(L, "local t = {} t[1] = t return t", "nested deeper than");
    enc_fails(L, "local t = {} t.self = t return t", "nested deeper than");
    enc_fails(L, "local a, b = {}, {} a.b = b b.a = a return {a}", "nested deeper than");

    /* the caller's limit */
    struct sp_buf out = {0};
    sp_err err = {{0}};
    push_lua(L, "return {{{}}}");
    assert_int_equal(sp_json_encode(L, -1, &out, 2, &err), -1);
    assert_non_null(strstr(err.msg, "nested deeper than 2"));
    out.len = 0;
    assert_int_equal(sp_json_encode(L, -1, &out, 3, &err), 0);
    assert_string_equal(out.data, "[[{}]]");
    lua_pop(L, 1);
    sp_buf_free(&out);
}

static void test_encode_strings(void **state)
{
    lua_State *L = *state;

    ENC(L, "return '\\1\\31\\b\\f\\n\\r\\t\"\\\\/'",
        "\"\\u0001\\u001f\\u0008\\u000c\\n\\r\\t\\\"\\\\/\"");
    ENC(L, "return 'a\\0b'", "\"a\\u0000b\"");
    ENC(L, "return '\\127'", "\"\x7f\"");
    ENC(L, "return 'caf\\u{e9}'", "\"caf\xc3\xa9\"");
    ENC(L, "return {['\\n'] = 1}", "{\"\\n\":1}"); /* keys are escaped too */

    /* embedded NUL survives a round trip in both directions */
    lua_pushlstring(L, "x\0y\0", 4);
    char *s = encode_top(L);
    assert_string_equal(s, "\"x\\u0000y\\u0000\"");
    decode(L, s);
    size_t len;
    const char *back = lua_tolstring(L, -1, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(back, "x\0y\0", 4);
    lua_pop(L, 1);
    free(s);

    /* the C helper, appending */
    struct sp_buf out = {0};
    sp_buf_adds(&out, "k=");
    sp_json_add_string(&out, "q\"\x02", 3);
    assert_string_equal(out.data, "k=\"q\\\"\\u0002\"");
    assert_int_equal(out.len, strlen(out.data));
    sp_buf_free(&out);

    /* all 32 control characters come out as something JSON accepts, and back */
    char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (char)i;
    lua_pushlstring(L, raw, sizeof(raw));
    s = encode_top(L);
    for (const char *p = s; *p; p++)
        assert_true((unsigned char)*p >= 0x20);
    decode(L, s);
    back = lua_tolstring(L, -1, &len);
    assert_int_equal(len, sizeof(raw));
    assert_memory_equal(back, raw, sizeof(raw));
    lua_pop(L, 1);
    free(s);
}

/* Objects come out in the order of their keys' bytes whatever order Lua holds them in: one
 * table must give the same bytes (and so the same ETag) in every worker and instance, and Lua's
 * table order depends on a seed each state draws. Here the same keys are inserted in two orders,
 * and a table large enough to leave the stack-sized buffer is checked too. */
static void test_encode_sorts_keys(void **state)
{
    lua_State *L = *state;

    ENC(L, "return {b = 1, a = 2, c = {z = true, y = false}}", "{\"a\":2,\"b\":1,\"c\":{\"y\":false,\"z\":true}}");
    ENC(L, "local t = {} t.c = {y = false, z = true} t.a = 2 t.b = 1 return t",
        "{\"a\":2,\"b\":1,\"c\":{\"y\":false,\"z\":true}}");
    ENC(L, "return {ab = 1, a = 2, [\"\"] = 3, b = 4}", "{\"\":3,\"a\":2,\"ab\":1,\"b\":4}");
    ENC(L, "return {[10] = 'x', [2] = 'y', [1.5] = 'z'}", "{\"1.5\":\"z\",\"10\":\"x\",\"2\":\"y\"}");

    push_lua(L, "local t = {} for i = 100, 1, -1 do t[string.format('k%03d', i)] = i end return t");
    char *got = encode_top(L);
    char *p = got;
    for (int i = 1; i <= 100; i++) {
        char want[32];
        snprintf(want, sizeof(want), "\"k%03d\":%d", i, i);
        p = strstr(p, want);
        if (!p)
            fail_msg("member %d missing or out of order in %s", i, got);
    }
    free(got);
}

static void test_encode_keeps_stack_and_appends(void **state)
{
    lua_State *L = *state;
    struct sp_buf out = {0};
    sp_err err = {{0}};

    lua_pushinteger(L, 7);
    push_lua(L, "return {a = {1, 2}}");
    lua_pushinteger(L, 8);
    sp_buf_adds(&out, "x");
    assert_int_equal(sp_json_encode(L, -2, &out, DEPTH, &err), 0);
    assert_string_equal(out.data, "x{\"a\":[1,2]}");
    assert_int_equal(lua_gettop(L), 3);
    assert_int_equal(lua_tointeger(L, 1), 7);
    assert_int_equal(lua_tointeger(L, 3), 8);
    /* absolute index too */
    assert_int_equal(sp_json_encode(L, 1, &out, DEPTH, &err), 0);
    assert_string_equal(out.data, "x{\"a\":[1,2]}7");
    lua_settop(L, 0);
    sp_buf_free(&out);

    /* an error midway leaves the stack as it was */
    push_lua(L, "return {a = {1, {b = print}}}");
    assert_int_equal(sp_json_encode(L, -1, &out, DEPTH, &err), -1);
    assert_int_equal(lua_gettop(L), 1);
    lua_settop(L, 0);
    sp_buf_free(&out);
}

static void test_decode_keeps_stack(void **state)
{
    lua_State *L = *state;
    sp_err err = {{0}};

    lua_pushliteral(L, "below");
    assert_int_equal(sp_json_decode(L, "[1,{\"a\":[2,", 11, DEPTH, &err), -1);
    assert_int_equal(lua_gettop(L), 1);
    assert_int_equal(sp_json_decode(L, "{\"a\":[2]}", 9, DEPTH, &err), 0);
    assert_int_equal(lua_gettop(L), 2);
    assert_true(lua_istable(L, 2));
    assert_string_equal(lua_tostring(L, 1), "below");
    lua_settop(L, 0);
}

/* The word-at-a-time escaping against a byte-at-a-time reference, on random text heavy in
 * the bytes that need escaping, at every alignment. */
static void naive_escape(struct sp_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    sp_buf_addc(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            sp_buf_addc(out, '\\');
            sp_buf_addc(out, (char)c);
        } else if (c == '\n') {
            sp_buf_add(out, "\\n", 2);
        } else if (c == '\r') {
            sp_buf_add(out, "\\r", 2);
        } else if (c == '\t') {
            sp_buf_add(out, "\\t", 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sp_buf_add(out, u, 6);
        } else {
            sp_buf_addc(out, (char)c);
        }
    }
    sp_buf_addc(out, '"');
}

static void test_escape_matches_reference(void **state)
{
    static const char pick[] = {'a', ' ', '"', '\\', '\n', '\t', 0x01, 0x1f, 0x20, 0x7f,
                                (char)0xc3, (char)0xa9, (char)0x80, (char)0xff, 'z', '!'};
    char text[64];
    unsigned seed = 12345;

    (void)state;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 40);
        struct sp_buf a = {0}, b = {0};
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            text[i] = (seed >> 16) % 4 == 0 ? pick[(seed >> 8) % sizeof(pick)] : 'x';
        }
        sp_buf_adds(&a, ">");
        sp_buf_adds(&b, ">");
        sp_json_add_string(&a, text, len);
        naive_escape(&b, text, len);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        assert_int_equal(a.data[a.len], '\0');
        sp_buf_free(&a);
        sp_buf_free(&b);
    }
}

/* Floats are written as %.14g (or %.17g) would write them, however they are written. */
static void test_floats_as_printf_writes_them(void **state)
{
    lua_State *L = luaL_newstate();
    unsigned seed = 7;

    (void)state;
    sp_json_init(L);
    for (int i = 0; i < 200000; i++) {
        double v;
        seed = seed * 1103515245u + 12345u;
        switch (i % 5) {
        case 0: v = (double)((int)(seed >> 8) % 2000000 - 1000000) / 100; break;
        case 1: v = (double)((int)(seed >> 4) % 20000000) / 1000; break;
        case 2: v = (double)(seed % 1000) / 3600; break;
        case 3: v = (double)(seed >> 1) * 1e6 + 0.5; break;
        default: v = ldexp((double)seed, (int)(seed % 80) - 60); break;
        }
        char want[64];
        int n = snprintf(want, sizeof(want), "%.14g", v);
        if (strtod(want, NULL) != v)
            n = snprintf(want, sizeof(want), "%.17g", v);
        if (strpbrk(want, ".eEn") == NULL)
            want[n++] = '.', want[n++] = '0', want[n] = '\0';
        struct sp_buf b = {0};
        sp_err err;
        lua_pushnumber(L, v);
        assert_int_equal(0, sp_json_encode(L, -1, &b, 10, &err));
        lua_pop(L, 1);
        assert_string_equal(want, b.data);
        sp_buf_free(&b);
    }
    lua_close(L);
}

/* sp_json_scale: compact, members in key order, integers under the keys divided; -1 and out
 * untouched for what it leaves to the decoder. */
static void test_scale(void **state)
{
    static const char keys[] = ",amount,total,";
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"{\"total\": 50050, \"n\": 3}", "{\"n\":3,\"total\":500.5}"},
        {" [ {\"amount\" : -7} , 2.50, 1e3, -0, true, false, null, \"x\", [], {} ] ",
         "[{\"amount\":-0.07},2.5,1000.0,0,true,false,null,\"x\",[],{}]"},
        {"{\"a\": {\"total\": 100}, \"total\": 1.5, \"totals\": 7}",
         "{\"a\":{\"total\":1.0},\"total\":1.5,\"totals\":7}"},
        {"{\"tax_rate\": 1, \"tax\": 2, \"b\": {\"z\": 1, \"y\": 2}, \"a\": []}",
         "{\"a\":[],\"b\":{\"y\":2,\"z\":1},\"tax\":2,\"tax_rate\":1}"},
        {"{\"amount\": 123456789012345678}", "{\"amount\":1234567890123456.8}"},
        {"\"caf\xc3\xa9 <x>\"", "\"caf\xc3\xa9 <x>\""},
        /* already in key order (written as it comes), and a name that only ends like a key */
        {"{\"amount\": 250, \"code\": \"x\", \"total\": 5}",
         "{\"amount\":2.5,\"code\":\"x\",\"total\":0.05}"},
        {"{\"mount\": 1, \"t\": 2, \"otal\": 3, \"amount,total\": 4}",
         "{\"amount,total\":4,\"mount\":1,\"otal\":3,\"t\":2}"},
    };
    static const char *const left[] = {
        "{", "{\"a\": \"q\\\"\"}", "{\"a\": 01}", "{\"a\": .5}", "{\"a\": 1.e5}", "[1,]",
        "{\"a\" 1}", "1 2", "{\"total\": 99999999999999999999}", "tru", "",
        "{\"a\": 1, \"b\": }", "{\"b\": 1, \"a\": 2", "{\"a\": 1 \"b\": 2}",
    };

    (void)state;
    for (size_t i = 0; i < SP_ARRAY_LEN(ok); i++) {
        struct sp_buf b = {0};
        sp_buf_add(&b, "<", 1);
        assert_int_equal(0, sp_json_scale(ok[i].in, strlen(ok[i].in), keys, strlen(keys), 100,
                                          &b));
        assert_string_equal(ok[i].out, b.data + 1);
        sp_buf_free(&b);
    }
    for (size_t i = 0; i < SP_ARRAY_LEN(left); i++) {
        struct sp_buf b = {0};
        sp_buf_add(&b, "<", 1);
        assert_int_equal(-1, sp_json_scale(left[i], strlen(left[i]), keys, strlen(keys), 100,
                                           &b));
        assert_int_equal(1, b.len);
        sp_buf_free(&b);
    }
    { /* an object whose members take more room than the copy kept on the stack */
        struct sp_buf in = {0}, want = {0}, b = {0};
        sp_buf_adds(&in, "{\"z\": \"");
        sp_buf_adds(&want, "{\"a\":[1,{\"total\":0.02}],\"z\":\"");
        for (int i = 0; i < 700; i++) {
            sp_buf_addc(&in, 'x');
            sp_buf_addc(&want, 'x');
        }
        sp_buf_adds(&in, "\", \"a\": [1, {\"total\": 2}]}");
        sp_buf_adds(&want, "\"}");
        assert_int_equal(0, sp_json_scale(in.data, in.len, keys, strlen(keys), 100, &b));
        assert_string_equal(want.data, b.data);
        sp_buf_free(&in);
        sp_buf_free(&want);
        sp_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_matches_reference),
        cmocka_unit_test(test_floats_as_printf_writes_them),
        cmocka_unit_test(test_scale),
        cmocka_unit_test_setup_teardown(test_decode_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_arrays_and_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_empty_array_vs_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_long_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_string_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_bad_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_bad_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_control_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_trailing_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects_leading_zeros, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_huge_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_keeps_stack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_keeps_stack_and_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_sorts_keys, setup, teardown),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
