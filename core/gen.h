/* gen.h: a script generation — one Lua state with every script and plugin loaded, the route
 * table they declared, its memory cap. Requests hold a reference; the worker swaps the current
 * generation on reload and the old one is closed when its last request ends. */
#ifndef SP_GEN_H
#define SP_GEN_H

#include <lua.h>
#include <stdint.h>
#include <time.h>

#include "sp.h"

struct sp_conf;
struct sp_router;
struct sp_req;
struct sp_pool_slab;

/* The allocator's small blocks (gen.c): size classes of SP_POOL_STEP bytes up to SP_POOL_MAX. */
#define SP_POOL_STEP 16
#define SP_POOL_MAX 256

enum sp_limit { SP_LIMIT_NONE, SP_LIMIT_INSTRUCTIONS, SP_LIMIT_MEMORY };

/* A running coroutine's budget: the instructions it spent, the limit it hit. */
struct sp_budget {
    long instructions;
    enum sp_limit limit;
};

/* Sets a part of the spacer module on the table at the top of the stack. */
typedef void (*sp_gen_opener)(lua_State *L);

/* The registry key of the spacer.error metatable (set by the prelude). */
extern const char sp_lua_error_mt_key;

#define SP_GEN_SPARE_CO 16

struct sp_gen {
    lua_State *L;
    int refs;
    uint64_t number;
    time_t loaded_at;
    uint64_t load_us;          /* how long loading took */
    struct sp_router *router;
    const struct sp_conf *conf;
    int worker;                /* the worker's index; -1 in the command-line tools */
    size_t mem_used, mem_limit;
    size_t mem_peak;
    struct sp_budget *running; /* the budget of the coroutine running now, for the limits */
    int loading;               /* scripts' load-time code runs now: the load limits apply */
    int load_limit;            /* enum sp_limit: what stopped the load, SP_LIMIT_NONE if nothing */
    long load_instructions;    /* spent while loading */
    char load_where[192];      /* "file:line" last entered while loading */
    int run_ref;               /* the prelude's request runner */
    int auth_ref;              /* scripts' resolver of token claims to a user, or LUA_NOREF */
    struct sp_conf *own_conf;  /* a reload's settings (conf), freed with the generation; or NULL */
    /* Coroutines of requests that returned normally, kept (by a registry reference) for the
     * next requests: a fresh thread and its stack are allocated, then collected, per request. */
    lua_State *spare_co[SP_GEN_SPARE_CO];
    int spare_ref[SP_GEN_SPARE_CO];
    int nspare_co;
    /* The allocator's pool of small blocks (gen.c): free lists per 16-byte size class, the
     * slab being carved, every slab (freed with the state). */
    void *pool_free[SP_POOL_MAX / SP_POOL_STEP + 1];
    char *pool_pos, *pool_end;
    struct sp_pool_slab *pool_slabs;
};

/* Loads scripts/init.lua (and whatever it requires) into a new state, the spacer module made
 * by openers (NULL-terminated). On success *out is the caller's with one reference, to drop
 * with sp_gen_unref(); err says "file:line: message". */
int sp_gen_load(const struct sp_conf *conf, int worker, const sp_gen_opener *openers,
                uint64_t number, struct sp_gen **out, sp_err *err);
void sp_gen_ref(struct sp_gen *gen);
void sp_gen_unref(struct sp_gen *gen); /* closes the state at zero; NULL is fine */

/* Runs a Lua file (a test file) in the sandbox of gen: pushes its chunk on gen->L. */
int sp_gen_loadfile(struct sp_gen *gen, const char *path, sp_err *err);

/* Pushes the scripts' global table (the sandbox). */
void sp_gen_push_env(struct sp_gen *gen);

/* Like luaL_checklstring, for text that reaches C as a NUL-terminated string: a string with
 * an embedded NUL raises "bad argument #arg to 'f' (contains a NUL byte)" instead of being
 * cut there. len may be NULL.  [-0, +0, v] */
const char *sp_lua_checktext(lua_State *L, int arg, size_t *len);
const char *sp_lua_opttext(lua_State *L, int arg, const char *def);

/* Pushes a text for the error value at idx without running any of its metamethods (a
 * __tostring that raises would be an unprotected error where the core logs it): a string or
 * number as is, a table's message field, else its type.  [-0, +1, m] */
void sp_lua_push_error_text(lua_State *L, int idx);

/* The request behind a coroutine (set by the request runner), or NULL. */
struct sp_req *sp_gen_req(lua_State *L);
void sp_gen_set_req(lua_State *co, struct sp_req *req);
struct sp_gen *sp_gen_of(lua_State *L);

/* Arms the per-request instruction budget on a coroutine. */
void sp_gen_arm_limits(struct sp_gen *gen, lua_State *co);

#endif
