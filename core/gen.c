/* gen.c: building a script generation. A new Lua state with a capping allocator, a sandboxed
 * global table, our `require`, the `spacer` module (C parts and the embedded prelude), then
 * scripts/init.lua. Any failure throws the whole state away; nothing half-loaded ever serves. */
#include "gen.h"

#include <errno.h>
#include <stddef.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "conf.h"
#include "embed.h"
#include "json.h"
#include "log.h"
#include "router.h"

/* Registry keys (their addresses). */
static const char key_gen = 'g', key_env = 'e', key_loaded = 'l', key_finisher = 'f';
const char sp_lua_error_mt_key = 'E';

#define HOOK_STEP 10000 /* instructions between two looks at the budget */

static void load_hook(lua_State *L, lua_Debug *ar);
static void load_where_set(struct sp_gen *gen, lua_State *L);

/* ---- memory ---------------------------------------------------------------- */

/* Small blocks (most of a request's: its tables, their parts, its strings) come from a pool of
 * the state: per size class (16-byte steps up to SP_POOL_MAX), a free list fed by slabs
 * carved in order, so a block is a pop and a push instead of malloc's and free's work. The
 * slabs go back when the state closes; a freed small block waits in its list for the next
 * one of its class. Larger blocks are malloc's. The sanitizer build does without the pool:
 * AddressSanitizer then sees every block on its own. */
#define SP_POOL_SLAB 16384

struct sp_pool_slab {
    struct sp_pool_slab *next;
    max_align_t align; /* the blocks start here, aligned for anything */
};

#ifndef SP_SANITIZE
static size_t pool_class(size_t n)
{
    return (n + SP_POOL_STEP - 1) / SP_POOL_STEP; /* 1..SP_POOL_MAX / SP_POOL_STEP */
}

static void *pool_get(struct sp_gen *gen, size_t cls)
{
    void *p = gen->pool_free[cls];
    size_t size = cls * SP_POOL_STEP;

    if (p != NULL) {
        gen->pool_free[cls] = *(void **)p;
        return p;
    }
    if ((size_t)(gen->pool_end - gen->pool_pos) < size) {
        struct sp_pool_slab *slab = malloc(SP_POOL_SLAB);
        if (slab == NULL)
            return NULL;
        /* the rest of the old slab feeds the free lists of the classes it fits */
        while ((size_t)(gen->pool_end - gen->pool_pos) >= SP_POOL_STEP) {
            size_t c = (size_t)(gen->pool_end - gen->pool_pos) / SP_POOL_STEP;
            if (c > SP_POOL_MAX / SP_POOL_STEP)
                c = SP_POOL_MAX / SP_POOL_STEP;
            *(void **)gen->pool_pos = gen->pool_free[c];
            gen->pool_free[c] = gen->pool_pos;
            gen->pool_pos += c * SP_POOL_STEP;
        }
        slab->next = gen->pool_slabs;
        gen->pool_slabs = slab;
        gen->pool_pos = (char *)&slab->align;
        gen->pool_end = (char *)slab + SP_POOL_SLAB;
    }
    p = gen->pool_pos;
    gen->pool_pos += size;
    return p;
}

static void pool_put(struct sp_gen *gen, void *p, size_t cls)
{
    *(void **)p = gen->pool_free[cls];
    gen->pool_free[cls] = p;
}

/* A block of nsize bytes for ptr's osize (ptr NULL: a new one): from the pool or malloc. */
static void *block_resize(struct sp_gen *gen, void *ptr, size_t osize, size_t nsize)
{
    size_t oc = ptr != NULL && osize <= SP_POOL_MAX ? pool_class(osize) : 0;
    size_t nc = nsize <= SP_POOL_MAX ? pool_class(nsize) : 0;
    void *p;

    if (ptr != NULL && oc == nc && oc != 0)
        return ptr; /* the block it has fits */
    if (nc == 0 && oc == 0)
        return realloc(ptr, nsize); /* malloc's to malloc's, or a new large one */
    if ((p = nc != 0 ? pool_get(gen, nc) : malloc(nsize)) == NULL)
        return NULL;
    if (ptr != NULL) {
        memcpy(p, ptr, osize < nsize ? osize : nsize);
        if (oc != 0)
            pool_put(gen, ptr, oc);
        else
            free(ptr);
    }
    return p;
}

static void block_free(struct sp_gen *gen, void *ptr, size_t osize)
{
    if (ptr == NULL)
        return;
    if (osize <= SP_POOL_MAX)
        pool_put(gen, ptr, pool_class(osize));
    else
        free(ptr);
}
#else
static void *block_resize(struct sp_gen *gen, void *ptr, size_t osize, size_t nsize)
{
    SP_UNUSED(gen);
    SP_UNUSED(osize);
    return realloc(ptr, nsize);
}

static void block_free(struct sp_gen *gen, void *ptr, size_t osize)
{
    SP_UNUSED(gen);
    SP_UNUSED(osize);
    free(ptr);
}
#endif

static void pool_release(struct sp_gen *gen)
{
    while (gen->pool_slabs != NULL) {
        struct sp_pool_slab *next = gen->pool_slabs->next;
        free(gen->pool_slabs);
        gen->pool_slabs = next;
    }
}

/* The allocator caps the state's memory. Growth past the cap is refused (Lua raises a memory
 * error); shrinking and freeing always succeed. */
static void *gen_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sp_gen *gen = ud;

    if (ptr == NULL)
        osize = 0; /* osize then encodes the object's type, not a size */
    if (nsize == 0) {
        block_free(gen, ptr, osize);
        gen->mem_used -= osize;
        return NULL;
    }
    /* Only a running script is refused: the core's own small allocations (a request's
     * table, a reply) happen outside protected calls, where a refusal would be a panic. */
    if (nsize > osize && (gen->running != NULL || gen->loading) && gen->mem_limit &&
        gen->mem_used + (nsize - osize) > gen->mem_limit) {
        if (gen->running != NULL) {
            if (gen->running->limit == SP_LIMIT_NONE)
                gen->running->limit = SP_LIMIT_MEMORY;
        } else if (gen->load_limit == SP_LIMIT_NONE) {
            gen->load_limit = SP_LIMIT_MEMORY;
#if LUA_VERSION_RELEASE_NUM <= 50404
            /* Up to 5.4.4 the call stack is consistent during any allocation (a growing
             * stack is copied to a new block, not moved in place), so it may be read here. */
            load_where_set(gen, gen->L);
#endif
            /* A pcall in the script may catch the memory error: the next instruction raises
             * again (lua_sethook may be called from anywhere, even here). */
            lua_sethook(gen->L, load_hook, LUA_MASKCOUNT, 1);
        }
        return NULL;
    }
    void *p = block_resize(gen, ptr, osize, nsize);
    if (p == NULL)
        return NULL;
    gen->mem_used = gen->mem_used - osize + nsize;
    if (gen->mem_used > gen->mem_peak)
        gen->mem_peak = gen->mem_used;
    return p;
}

/* An error outside any protected call: nothing can be unwound, so say what and stop; the
 * master starts a fresh worker. */
static int gen_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);

    sp_log(SP_LOG_ERROR, "lua panic (unprotected error): %s", msg ? msg : "?");
    abort();
    return 0;
}

/* ---- instruction budget --------------------------------------------------------- */

/* Where a script runs now: "file:line" of the innermost function loaded from a file. */
static void load_where_set(struct sp_gen *gen, lua_State *L)
{
    lua_Debug ar;

    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.source[0] == '@' && ar.currentline > 0) {
            snprintf(gen->load_where, sizeof(gen->load_where), "%s:%d", ar.short_src,
                     ar.currentline);
            return;
        }
    }
}

/* While a generation loads there is no request: the budget and the memory cap are the
 * generation's own. Once a limit is hit, every instruction raises, so a pcall in a script
 * cannot swallow it, and the load fails with "file:line: script ... limit exceeded". */
static void load_hook(lua_State *L, lua_Debug *ar)
{
    struct sp_gen *gen = sp_gen_of(L);

    SP_UNUSED(ar);
    if (gen == NULL || !gen->loading)
        return;
    if (gen->load_limit == SP_LIMIT_NONE) {
        gen->load_instructions += HOOK_STEP;
        if (gen->load_instructions < gen->conf->load_instruction_limit) {
#if LUA_VERSION_RELEASE_NUM > 50404
            load_where_set(gen, L); /* the allocator cannot look (see gen_alloc) */
#endif
            return;
        }
        gen->load_limit = SP_LIMIT_INSTRUCTIONS;
        load_where_set(gen, L);
        lua_sethook(L, load_hook, LUA_MASKCOUNT, 1);
    }
    lua_pushfstring(L, "%s: script %s limit exceeded while loading", gen->load_where,
                    gen->load_limit == SP_LIMIT_MEMORY ? "memory" : "instruction");
    lua_error(L);
}

static void limit_hook(lua_State *L, lua_Debug *ar)
{
    struct sp_gen *gen = sp_gen_of(L);
    struct sp_budget *b = gen ? gen->running : NULL;

    SP_UNUSED(ar);
    if (b == NULL) {
        load_hook(L, ar); /* a thread made while loading, if any */
        return;
    }
    if (b->limit == SP_LIMIT_NONE) {
        b->instructions += HOOK_STEP;
        if (b->instructions < gen->conf->instruction_limit)
            return;
        b->limit = SP_LIMIT_INSTRUCTIONS;
    }
    /* Spent (or out of memory): from now on every instruction raises, so a pcall in the
     * script cannot swallow the abort. */
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, b->limit == SP_LIMIT_MEMORY ? "script memory limit exceeded"
                                              : "script instruction limit exceeded");
}

void sp_gen_arm_limits(struct sp_gen *gen, lua_State *co)
{
    long step = gen->conf->instruction_limit < HOOK_STEP ? gen->conf->instruction_limit : HOOK_STEP;

    lua_sethook(co, limit_hook, LUA_MASKCOUNT, (int)step);
}

const char *sp_lua_checktext(lua_State *L, int arg, size_t *len)
{
    size_t n;
    const char *s = luaL_checklstring(L, arg, &n);

    if (memchr(s, '\0', n) != NULL)
        luaL_argerror(L, arg, "contains a NUL byte");
    if (len != NULL)
        *len = n;
    return s;
}

const char *sp_lua_opttext(lua_State *L, int arg, const char *def)
{
    return lua_isnoneornil(L, arg) ? def : sp_lua_checktext(L, arg, NULL);
}

void sp_lua_push_error_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: lua_pushvalue(L, idx); return;
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tolstring(L, -1, NULL); /* the copy becomes a string */
        return;
    case LUA_TTABLE:
        lua_pushliteral(L, "message");
        if (lua_rawget(L, idx) == LUA_TSTRING) {
            lua_pushliteral(L, "sqlstate");
            if (lua_rawget(L, idx) == LUA_TSTRING) { /* a spacer.db error */
                lua_pushfstring(L, "database error %s: ", lua_tostring(L, -1));
                lua_rotate(L, -3, 1);
                lua_pop(L, 1);
                lua_concat(L, 2);
            } else {
                lua_pop(L, 1);
            }
            return;
        }
        lua_pop(L, 1);
        break;
    default: break;
    }
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

struct sp_req *sp_gen_req(lua_State *L)
{
    return *(struct sp_req **)lua_getextraspace(L);
}

void sp_gen_set_req(lua_State *co, struct sp_req *req)
{
    *(struct sp_req **)lua_getextraspace(co) = req;
}

struct sp_gen *sp_gen_of(lua_State *L)
{
    struct sp_gen *gen;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_gen);
    gen = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return gen;
}

/* ---- the sandbox ------------------------------------------------------------ */

static int l_strict_index(lua_State *L)
{
    return luaL_error(L, "unknown global '%s'", luaL_optstring(L, 2, "?"));
}

static int l_strict_newindex(lua_State *L)
{
    return luaL_error(L, "assignment to undeclared global '%s' (use local)",
                      luaL_optstring(L, 2, "?"));
}

/* print() writes to the log, never to a terminal. */
static int l_print(lua_State *L)
{
    luaL_Buffer b;
    int n = lua_gettop(L);

    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    {
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        sp_log_text(SP_LOG_INFO, NULL, text, len); /* NUL bytes included */
    }
    return 0;
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, where no budget can stop a
 * loop, and at lua_close, outside any request. [-2, +1, e] */
static int l_setmetatable(lua_State *L)
{
    if (lua_istable(L, 2) && (lua_pushliteral(L, "__gc"), lua_rawget(L, 2)) != LUA_TNIL)
        return luaL_error(L, "setmetatable: __gc metamethods are not available to scripts");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* Copies the listed fields of the library table at the top of the stack into a new table
 * set as env[name]. Pops the library. */
static void allow(lua_State *L, int env, const char *name, const char *const *fields)
{
    lua_newtable(L);
    for (const char *const *f = fields; *f; f++) {
        lua_getfield(L, -2, *f);
        lua_setfield(L, -2, *f);
    }
    lua_setfield(L, env, name);
    lua_pop(L, 1);
}

static int open_sandbox(lua_State *L, sp_err *err)
{
    static const char *const base[] = {"assert", "error", "ipairs", "next", "pairs", "pcall",
                                       "rawequal", "rawget", "rawlen", "rawset", "select",
                                       "setmetatable", "getmetatable", "tonumber", "tostring",
                                       "type", "xpcall", "_VERSION", NULL};
    static const char *const os_ok[] = {"time", "clock", "date", "difftime", NULL};
    static const char *const string_ok[] = {"byte", "char", "find", "format", "gmatch", "gsub",
                                            "len", "lower", "match", "rep", "reverse", "sub",
                                            "upper", "pack", "packsize", "unpack", NULL};
    int env;

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_settop(L, 0);

    lua_newtable(L); /* the scripts' _ENV */
    env = lua_gettop(L);
    lua_pushglobaltable(L);
    for (const char *const *f = base; *f; f++) {
        lua_getfield(L, -1, *f);
        lua_setfield(L, env, *f);
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_print);
    lua_setfield(L, env, "print");
    lua_getfield(L, env, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setfield(L, env, "setmetatable");
    lua_getglobal(L, "string");
    allow(L, env, "string", string_ok);
    lua_getglobal(L, "os");
    allow(L, env, "os", os_ok);
    lua_getglobal(L, "table");
    lua_setfield(L, env, "table");
    lua_getglobal(L, "math");
    lua_setfield(L, env, "math");
    lua_getglobal(L, "utf8");
    lua_setfield(L, env, "utf8");
    /* string methods ("x"):upper() go through the string metatable: drop dump there too. */
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_pushvalue(L, env);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_loaded);
    SP_UNUSED(err);
    return 0;
}

/* Makes the sandbox strict once loading is done: reading or creating an unknown global raises. */
static void seal_sandbox(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_newtable(L);
    lua_pushcfunction(L, l_strict_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_strict_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

/* Loads a text chunk from a file with the sandbox as its _ENV; pushes it. */
static int load_file(lua_State *L, const char *path, sp_err *err)
{
    FILE *f = fopen(path, "rb");
    struct sp_buf b = {0};
    char chunk[8192], name[512];
    size_t n;
    int rc = -1;

    if (f == NULL) {
        sp_err_set(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sp_buf_add(&b, chunk, n);
    fclose(f);
    snprintf(name, sizeof(name), "@%s", path);
    if (luaL_loadbufferx(L, b.data ? b.data : "", b.len, name, "t") != LUA_OK) {
        sp_err_set(err, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        goto done;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_setupvalue(L, -2, 1);
    rc = 0;
done:
    sp_buf_free(&b);
    return rc;
}

void sp_gen_push_env(struct sp_gen *gen)
{
    lua_rawgetp(gen->L, LUA_REGISTRYINDEX, &key_env);
}

int sp_gen_loadfile(struct sp_gen *gen, const char *path, sp_err *err)
{
    return load_file(gen->L, path, err);
}

/* require(name): "lib.schema" -> <scripts>/lib/schema.lua; "plugins.payments.mpesa" ->
 * <plugins>/payments/mpesa.lua. Only those two trees; text chunks only; cached. */
static int l_require(lua_State *L)
{
    const char *name = sp_lua_checktext(L, 1, NULL);
    struct sp_gen *gen = sp_gen_of(L);
    char path[1024], rel[512];
    const char *root = gen->conf->scripts_dir, *mod = name;
    sp_err err;
    size_t i;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_loaded);
    if (lua_getfield(L, -1, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    for (i = 0; name[i]; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_' || (name[i] == '.' && i > 0 && name[i - 1] != '.')))
            return luaL_error(L, "require: bad module name '%s'", name);
    if (i == 0 || i >= sizeof(rel) - 8 || name[i - 1] == '.')
        return luaL_error(L, "require: bad module name '%s'", name);
    if (strncmp(name, "plugins.", 8) == 0) {
        root = gen->conf->plugins_dir;
        mod = name + 8;
    }
    snprintf(rel, sizeof(rel), "%s", mod);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    snprintf(path, sizeof(path), "%s/%s.lua", root, rel);
    if (load_file(L, path, &err) != 0) {
        if (access(path, R_OK) != 0)
            return luaL_error(L, "module '%s' not found (%s)", name, path);
        lua_pushstring(L, err.msg); /* a syntax error: its own file:line says where */
        return lua_error(L);
    }
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name); /* loaded[name] = module */
    return 1;
}

/* ---- core internals for the prelude ----------------------------------------------- */

/* The first frame outside the prelude: where a route was declared. */
static void caller_source(lua_State *L, char *buf, size_t cap)
{
    lua_Debug ar;

    snprintf(buf, cap, "?");
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.source[0] == '@') {
            snprintf(buf, cap, "%s:%d", ar.source + 1, ar.currentline);
            return;
        }
    }
}

/* rt's flags from the options of the route table at idx (its opts field). */
static void route_read_opts(lua_State *L, int idx, struct sp_route *rt)
{
    lua_getfield(L, idx, "opts");
    lua_getfield(L, -1, "raw_body");
    rt->raw_body = lua_toboolean(L, -1);
    lua_pop(L, 2);
}

/* core.add_route(method, path, entry, auth, roles, compat, cache_tags, etag) */
static int l_core_add_route(lua_State *L)
{
    struct sp_gen *gen = sp_gen_of(L);
    const char *method = sp_lua_checktext(L, 1, NULL), *path = sp_lua_checktext(L, 2, NULL);
    struct sp_route *rt;
    char source[600];
    sp_err err;

    luaL_checktype(L, 3, LUA_TTABLE);
    caller_source(L, source, sizeof(source));
    if (sp_router_add(gen->router, method, path, source, &rt, &err) != 0) {
        lua_pushfstring(L, "%s: %s", source, err.msg); /* where the script declared it */
        return lua_error(L);
    }
    rt->auth = lua_toboolean(L, 4);
    rt->compat = lua_toboolean(L, 6);
    route_read_opts(L, 3, rt); /* again once every script has loaded (route_flags) */
    if (lua_istable(L, 5)) {
        int n = (int)lua_rawlen(L, 5);
        if ((rt->roles = calloc((size_t)n + 1, sizeof(char *))) == NULL)
            return luaL_error(L, "out of memory");
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 5, i);
            if ((rt->roles[rt->nroles] = strdup(sp_lua_checktext(L, -1, NULL))) == NULL)
                return luaL_error(L, "out of memory");
            rt->nroles++;
            lua_pop(L, 1);
        }
    }
    rt->etag = lua_toboolean(L, 8);
    if (lua_istable(L, 7)) {
        int n = (int)lua_rawlen(L, 7);
        if (n > SP_CACHE_MAX_TAGS)
            return luaL_error(L, "%s: at most %d cache tags", source, SP_CACHE_MAX_TAGS);
        if ((rt->cache_tags = calloc((size_t)n + 1, sizeof(char *))) == NULL)
            return luaL_error(L, "out of memory");
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 7, i);
            if ((rt->cache_tags[rt->ncache_tags] = strdup(luaL_checkstring(L, -1))) == NULL)
                return luaL_error(L, "out of memory");
            rt->ncache_tags++;
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, 3);
    rt->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_core_set_runner(lua_State *L)
{
    struct sp_gen *gen = sp_gen_of(L);

    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    gen->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_core_set_error_mt(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sp_lua_error_mt_key);
    return 0;
}

static int l_core_set_finisher(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_finisher);
    return 0;
}

static int l_core_is_core_section(lua_State *L)
{
    lua_pushboolean(L, sp_conf_core_section(luaL_checkstring(L, 1)));
    return 1;
}

/* Pushes config values and their lines: two tables section -> key -> value|line. */
static void push_conf(lua_State *L, const struct sp_conf *conf)
{
    int values, lines;

    lua_newtable(L);
    values = lua_gettop(L);
    lua_newtable(L);
    lines = values + 1;
    for (int i = 0; i < conf->nentries; i++) {
        const struct sp_conf_entry *e = &conf->entries[i];
        if ((strcmp(e->section, "auth") == 0 && strcmp(e->key, "jwt_secret") == 0) ||
            (strcmp(e->section, "database") == 0 && strcmp(e->key, "url") == 0))
            continue; /* scripts never see the secret, nor the database password */
        for (int t = values; t <= lines; t++) {
            if (lua_getfield(L, t, e->section) != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, t, e->section);
            }
            if (t == values)
                lua_pushstring(L, e->value);
            else
                lua_pushinteger(L, e->line);
            lua_setfield(L, -2, e->key);
            lua_pop(L, 1);
        }
    }
}

/* A protected call of load-time code: the load limits hold inside it (outside, a refused
 * allocation would be a panic). */
static int load_pcall(struct sp_gen *gen, int nargs, int nres, int msgh)
{
    int st;

    gen->loading = 1;
    st = lua_pcall(gen->L, nargs, nres, msgh);
    gen->loading = 0;
    return st;
}

/* A load that hit a limit: where it was stopped and which limit. */
static void load_limit_error(struct sp_gen *gen, sp_err *err)
{
    const char *what = gen->load_limit == SP_LIMIT_MEMORY ? "memory" : "instruction";

    if (gen->load_where[0] != '\0')
        sp_err_set(err, "%s: script %s limit exceeded while loading", gen->load_where, what);
    else
        sp_err_set(err, "%s/init.lua: script %s limit exceeded while loading",
                   gen->conf->scripts_dir, what);
}

static int run_prelude(struct sp_gen *gen, sp_err *err)
{
    lua_State *L = gen->L;
    static const luaL_Reg core_funcs[] = {
        {"add_route", l_core_add_route},
        {"set_runner", l_core_set_runner},
        {"set_error_mt", l_core_set_error_mt},
        {"set_finisher", l_core_set_finisher},
        {"is_core_section", l_core_is_core_section},
        {NULL, NULL},
    };

    if (luaL_loadbufferx(L, sp_embed_prelude, sizeof(sp_embed_prelude) - 1, "=prelude", "t") !=
        LUA_OK) {
        sp_err_set(err, "prelude: %s", lua_tostring(L, -1));
        return -1;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_setupvalue(L, -2, 1);
    luaL_newlib(L, core_funcs);
    lua_pushstring(L, gen->conf->path);
    lua_setfield(L, -2, "conf_path");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_getfield(L, -1, "spacer");
    lua_remove(L, -2);
    push_conf(L, gen->conf);
    if (load_pcall(gen, 4, 0, 0) != LUA_OK) {
        if (gen->load_limit != SP_LIMIT_NONE)
            load_limit_error(gen, err);
        else
            sp_err_set(err, "prelude: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void open_spacer(struct sp_gen *gen, const sp_gen_opener *openers)
{
    lua_State *L = gen->L;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_env);
    lua_newtable(L); /* spacer */
    for (int i = 0; openers != NULL && openers[i] != NULL; i++)
        openers[i](L);
    lua_newtable(L);
    lua_pushinteger(L, (lua_Integer)gen->number);
    lua_setfield(L, -2, "generation");
    lua_pushinteger(L, gen->worker);
    lua_setfield(L, -2, "index");
    lua_pushinteger(L, gen->worker >= 0 ? getpid() : 0);
    lua_setfield(L, -2, "pid");
    lua_setfield(L, -2, "worker");
    lua_pushstring(L, SP_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, gen->conf->production);
    lua_setfield(L, -2, "production");
    lua_setfield(L, -2, "spacer");
    lua_pushcfunction(L, l_require);
    lua_setfield(L, -2, "require");
    lua_pop(L, 1);
}

/* Message handler: the error with a traceback, unless it is a spacer.error. */
static int traceback(lua_State *L)
{
    if (!lua_isstring(L, 1))
        return 1;
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

static int run_init(struct sp_gen *gen, sp_err *err)
{
    lua_State *L = gen->L;
    char path[1024];
    int rc = -1;

    snprintf(path, sizeof(path), "%s/init.lua", gen->conf->scripts_dir);
    lua_pushcfunction(L, traceback);
    if (load_file(L, path, err) != 0)
        goto done;
    if (load_pcall(gen, 0, 0, -2) != LUA_OK) {
        if (gen->load_limit != SP_LIMIT_NONE) {
            load_limit_error(gen, err);
            goto done;
        }
        /* First line only: "scripts/pricing.lua:12: message". */
        const char *msg = lua_tostring(L, -1);
        const char *nl = msg ? strchr(msg, '\n') : NULL;
        sp_err_set(err, "%.*s", nl ? (int)(nl - msg) : 250, msg ? msg : "error while loading");
        goto done;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_finisher);
    if (load_pcall(gen, 0, 1, 0) != LUA_OK || lua_isstring(L, -1)) {
        if (gen->load_limit != SP_LIMIT_NONE)
            load_limit_error(gen, err);
        else
            sp_err_set(err, "%s", lua_tostring(L, -1));
        goto done;
    }
    rc = 0;
done:
    lua_settop(L, 0);
    return rc;
}

/* What a request reads of its route's options, read once the scripts have declared them all
 * rather than from the Lua table on every request. */
static void route_flags(struct sp_gen *gen)
{
    lua_State *L = gen->L;

    for (int i = 0; i < sp_router_count(gen->router); i++) {
        struct sp_route *rt = sp_router_at(gen->router, i);
        lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ref);
        route_read_opts(L, -1, rt);
        lua_pop(L, 1);
    }
}

int sp_gen_load(const struct sp_conf *conf, int worker, const sp_gen_opener *openers,
                uint64_t number, struct sp_gen **out, sp_err *err)
{
    struct sp_gen *gen = calloc(1, sizeof(*gen));
    uint64_t t0 = sp_now_us();
    int rc = -1;

    if (gen == NULL) {
        sp_err_set(err, "out of memory");
        return -1;
    }
    gen->refs = 1;
    gen->number = number;
    gen->conf = conf;
    gen->worker = worker;
    gen->mem_limit = conf->memory_limit;
    gen->run_ref = LUA_NOREF;
    gen->auth_ref = LUA_NOREF;
    gen->loaded_at = time(NULL);
    if ((gen->router = sp_router_new()) == NULL ||
        (gen->L = lua_newstate(gen_alloc, gen)) == NULL) {
        sp_err_set(err, "cannot create a Lua state: out of memory");
        goto done;
    }
    lua_atpanic(gen->L, gen_panic);
    lua_pushlightuserdata(gen->L, gen);
    lua_rawsetp(gen->L, LUA_REGISTRYINDEX, &key_gen);
    *(struct sp_req **)lua_getextraspace(gen->L) = NULL;
    sp_json_init(gen->L);
    if (open_sandbox(gen->L, err) != 0)
        goto done;
    open_spacer(gen, openers);
    /* The budget and the cap hold for everything the scripts run while loading. */
    lua_sethook(gen->L, load_hook, LUA_MASKCOUNT,
                (int)(conf->load_instruction_limit < HOOK_STEP ? conf->load_instruction_limit
                                                               : HOOK_STEP));
    if (run_prelude(gen, err) != 0 || run_init(gen, err) != 0)
        goto done;
    route_flags(gen);
    lua_sethook(gen->L, NULL, 0, 0);
    sp_log(SP_LOG_DEBUG, "generation %llu: about %ld instructions to load",
           (unsigned long long)number, gen->load_instructions);
    if (gen->run_ref == LUA_NOREF) {
        sp_err_set(err, "prelude did not install a runner");
        goto done;
    }
    seal_sandbox(gen->L);
    lua_gc(gen->L, LUA_GCCOLLECT);
    lua_gc(gen->L, LUA_GCGEN, 0, 0); /* generational: short-lived request garbage */
    gen->load_us = sp_now_us() - t0;
    *out = gen;
    gen = NULL;
    rc = 0;
done:
    sp_gen_unref(gen);
    return rc;
}

void sp_gen_ref(struct sp_gen *gen)
{
    gen->refs++;
}

void sp_gen_unref(struct sp_gen *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    if (gen->L != NULL)
        lua_close(gen->L);
    pool_release(gen);
    sp_router_free(gen->router);
    sp_conf_free(gen->own_conf);
    free(gen);
}
