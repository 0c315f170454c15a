/* lua_cache.c: spacer.cache, the scripts' view of the change versions (cache.h).
 *
 *   spacer.cache.touch(tag, ...)
 *     The data of these tags changed: answers cached under them are dropped by every worker
 *     of this instance at once (other instances learn it from the database's NOTIFY). A
 *     route calls it after a write, so that the writer's next read never meets the old data.
 *   spacer.cache.version(tag) -> integer | nil
 *     A number that grows whenever tag's data changes, or nil when nothing may be cached now
 *     (this worker's notification connection is down, a script test). A
 *     script may keep data of tag while the version it read before reading the data is
 *     still the current one. */
#include <lauxlib.h>

#include "cache.h"
#include "gen.h"
#include "lua_spacer.h"
#include "pglisten.h"
#include "req.h"

static int l_cache_touch(lua_State *L)
{
    int n = lua_gettop(L);

    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *tag = luaL_checklstring(L, i, &len);
        sp_cache_touch(tag, len);
    }
    return 0;
}

static int l_cache_version(lua_State *L)
{
    const char *tag = luaL_checkstring(L, 1);
    struct sp_req *req = sp_gen_req(L);

    if (req == NULL || req->w == NULL || !sp_listen_up(req->w->listen)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)sp_cache_version(tag));
    return 1;
}

void sp_lua_open_cache(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"touch", l_cache_touch},
        {"version", l_cache_version},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "cache");
}
