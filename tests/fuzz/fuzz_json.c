/* fuzz_json.c: core/json.c. Any bytes either decode or fail cleanly with the stack as it was;
 * what decodes encodes, and the encoding decodes again to the same value (the round trip a
 * request body takes through a handler and back into a response). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>

#include "fuzz.h"
#include "json.h"

static lua_State *L;

/* Whether the values at a and b are the same JSON value. An infinity (1e999 decodes to one)
 * encodes as null; an integer stays an integer and a float a float. */
static int same(int a, int b, int depth)
{
    int ta = lua_type(L, a), tb = lua_type(L, b);

    if (ta == LUA_TNUMBER && !lua_isinteger(L, a) && isinf(lua_tonumber(L, a)))
        return sp_json_is_null(L, b);
    if (ta != tb)
        return 0;
    switch (ta) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b))
            return 0;
        if (lua_isinteger(L, a))
            return lua_tointeger(L, a) == lua_tointeger(L, b);
        return lua_tonumber(L, a) == lua_tonumber(L, b) &&
               signbit(lua_tonumber(L, a)) == signbit(lua_tonumber(L, b));
    case LUA_TSTRING: {
        size_t la, lb;
        const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
        return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TLIGHTUSERDATA: return sp_json_is_null(L, a) && sp_json_is_null(L, b);
    case LUA_TTABLE: break;
    default: return 0;
    }
    if (depth > SP_JSON_MAX_DEPTH + 2 || !lua_checkstack(L, 6))
        return 0;
    /* Both directions: every key of a is in b with the same value, and b has no other key. */
    if (lua_rawlen(L, a) != lua_rawlen(L, b))
        return 0;
    int ma = lua_getmetatable(L, a), mb;
    if (ma)
        lua_pop(L, 1);
    mb = lua_getmetatable(L, b);
    if (mb)
        lua_pop(L, 1);
    if (ma != mb) /* decoded arrays carry the array metatable: [] and {} differ */
        return 0;
    int na = 0, nb = 0;
    lua_pushnil(L);
    while (lua_next(L, a) != 0) { /* Stack: k, v */
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b); /* Stack: k, v, v2 */
        int ok = same(lua_absindex(L, -2), lua_absindex(L, -1), depth + 1);
        lua_pop(L, 2);
        if (!ok) {
            lua_pop(L, 1);
            return 0;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
        nb++;
        lua_pop(L, 1);
    }
    return na == nb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_buf out = {0};
    sp_err err;

    if (L == NULL) {
        L = luaL_newstate();
        sp_json_init(L);
    }
    lua_settop(L, 0);
    if (sp_json_decode(L, (const char *)data, size, SP_JSON_MAX_DEPTH, &err) != 0) {
        if (lua_gettop(L) != 0)
            FUZZ_FAIL("a failed decode left %d values", lua_gettop(L));
        if (strncmp(err.msg, "invalid json at byte ", 21) != 0)
            FUZZ_FAIL("error without a position: %s", err.msg);
        return 0;
    }
    if (lua_gettop(L) != 1)
        FUZZ_FAIL("decode pushed %d values", lua_gettop(L));
    if (sp_json_encode(L, 1, &out, SP_JSON_MAX_DEPTH, &err) != 0)
        FUZZ_FAIL("decoded value does not encode: %s", err.msg);
    if (sp_json_decode(L, out.data, out.len, SP_JSON_MAX_DEPTH, &err) != 0)
        FUZZ_FAIL("encoding does not decode: %s: %.200s", err.msg, out.data);
    if (!same(1, 2, 0))
        FUZZ_FAIL("round trip changed the value: %.200s", out.data);
    sp_buf_free(&out);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
