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
struct sp_worker;

struct sp_gen {
    lua_State *L;
    int refs;
    uint64_t number;
    time_t loaded_at;
    uint64_t load_us;          /* how long loading took */
    struct sp_router *router;
    const struct sp_conf *conf;
    struct sp_worker *worker;  /* NULL in the command-line tools */
    size_t mem_used, mem_limit;
    size_t mem_peak;
    struct sp_req *running;    /* the request whose coroutine runs now, for the limits */
    int loading;               /* scripts' load-time code runs now: the load limits apply */
    int load_limit;            /* enum sp_limit: what stopped the load, SP_LIMIT_NONE if nothing */
    long load_instructions;    /* spent while loading */
    char load_where[192];      /* "file:line" last entered while loading */
    int run_ref;               /* the prelude's request runner */
    int auth_ref;              /* scripts' resolver of token claims to a user, or LUA_NOREF */
    struct sp_conf *own_conf;  /* a reload's settings (conf), freed with the generation; or NULL */
};

/* Loads scripts/init.lua (and whatever it requires) into a new state. On success *out is the
 * caller's with one reference, to drop with sp_gen_unref(); err says "file:line: message". */
int sp_gen_load(const struct sp_conf *conf, struct sp_worker *w, uint64_t number,
                struct sp_gen **out, sp_err *err);
void sp_gen_ref(struct sp_gen *gen);
void sp_gen_unref(struct sp_gen *gen); /* closes the state at zero; NULL is fine */

/* Runs a Lua file (a test file) in the sandbox of gen: pushes its chunk on gen->L. */
int sp_gen_loadfile(struct sp_gen *gen, const char *path, sp_err *err);

/* Pushes the scripts' global table (the sandbox). */
void sp_gen_push_env(struct sp_gen *gen);

/* The request behind a coroutine (set by the request runner), or NULL. */
struct sp_req *sp_gen_req(lua_State *L);
void sp_gen_set_req(lua_State *co, struct sp_req *req);
struct sp_gen *sp_gen_of(lua_State *L);

/* Arms the per-request instruction budget on a coroutine. */
void sp_gen_arm_limits(struct sp_gen *gen, lua_State *co, struct sp_req *req);

#endif
