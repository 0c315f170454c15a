/* timer.c: spacer.timer — background jobs. Scripts declare `every` timers at load time; the
 * generation keeps them (C memory in a userdata of its registry, freed when the state
 * closes). While a generation is current its worker runs each timer on the loop, a run being
 * a request without an HTTP connection: its own coroutine, the request's instruction budget
 * and memory cap, spacer.db and spacer.http. A run never overlaps the previous run of the same
 * timer; an error is logged with the timer's name and counted, never fatal. Every worker of
 * every instance runs every timer: jobs claim their rows (FOR UPDATE SKIP LOCKED or an
 * advisory lock) to run once. Knows the loop and the request life cycle, not what jobs do. */
#include "timer.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "gen.h"
#include "log.h"
#include "lua_spacer.h"
#include "metrics.h"
#include "req.h"

#define MIN_EVERY_S   0.1
#define MAX_EVERY_S   (7 * 86400.0)
#define MAX_AFTER_S   86400.0
#define MAX_ONE_SHOTS 1000 /* pending `after` timers of one generation */
#define NAME_MAX_LEN  48

static const char key_timers = 't';

struct sp_timers;

struct sp_timer {
    struct sp_timers *set;
    char name[NAME_MAX_LEN + 16];
    char source[200]; /* file:line of the declaration */
    double every_s;   /* 0: a one-shot (`after`) */
    double after_s;
    int fn_ref;
    struct event *ev;
    struct sp_req *running;
    unsigned long long runs, errors, skipped;
};

/* A generation's timers. */
struct sp_timers {
    struct sp_gen *gen;
    struct sp_host *w; /* the worker running them, from sp_timer_start */
    int started, stopped;
    int n, cap, one_shots;
    unsigned long long seq;
    struct sp_timer **list; /* pointers: an event keeps its timer's address */
};

static struct sp_timers *timers_of(lua_State *L)
{
    struct sp_timers *set;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_timers);
    set = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return set;
}

static void timer_free(struct sp_timer *t)
{
    if (t->ev != NULL)
        event_free(t->ev);
    free(t);
}

static int l_timers_gc(lua_State *L)
{
    struct sp_timers *set = lua_touserdata(L, 1);

    for (int i = 0; i < set->n; i++)
        timer_free(set->list[i]);
    free(set->list);
    set->list = NULL;
    set->n = 0;
    return 0;
}

/* A uniform random number in [0, 1). */
static double random01(void)
{
    uint32_t r = 0;

    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)sp_now_us();
    return r / 4294967296.0;
}

static void arm(struct sp_timer *t, double s)
{
    struct timeval tv;

    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - floor(s)) * 1e6);
    evtimer_add(t->ev, &tv);
}

/* The next run of an `every` timer: the period plus up to 10% (at most 5 s), so the workers
 * and instances drift apart instead of firing together. */
static double next_delay(const struct sp_timer *t)
{
    double spread = t->every_s * 0.1;

    return t->every_s + random01() * (spread < 5.0 ? spread : 5.0);
}

static void remove_timer(struct sp_timers *set, struct sp_timer *t)
{
    for (int i = 0; i < set->n; i++) {
        if (set->list[i] == t) {
            set->list[i] = set->list[--set->n];
            break;
        }
    }
    if (t->every_s == 0)
        set->one_shots--;
    luaL_unref(set->gen->L, LUA_REGISTRYINDEX, t->fn_ref);
    timer_free(t);
}

/* ---- a run ---------------------------------------------------------------------- */

/* A run counts as a request in flight: a draining worker waits for it. */
static void run_arrived(struct sp_host *w)
{
    w->inflight++;
}

static void run_left(struct sp_host *w)
{
    if (--w->inflight == 0 && w->draining && w->on_idle != NULL)
        w->on_idle(w);
}

static void run_done(struct sp_req *req, int ok)
{
    struct sp_timer *t = req->on_done_arg;
    struct sp_timers *set = t->set;
    struct sp_gen *gen = req->gen;
    struct sp_host *w = req->w;
    lua_State *co = req->co;

    t->runs++;
    t->running = NULL;
    metrics_timer_run(ok);
    if (!ok) {
        char fields[160];
        size_t n = 0;
        t->errors++;
        metrics_script_error(); /* a script error like a request's */
        fields[0] = '\0';
        n = (size_t)snprintf(fields, sizeof(fields), "\"timer\":\"");
        sp_json_escape(fields, sizeof(fields) - 4, &n, t->name);
        snprintf(fields + n, sizeof(fields) - n, "\"");
        if (req->budget.limit != SP_LIMIT_NONE) {
            sp_log_fields(SP_LOG_ERROR, fields,
                          "timer %s (%s): script %s limit exceeded; run ended", t->name, t->source,
                          req->budget.limit == SP_LIMIT_MEMORY ? "memory" : "instruction");
            if (req->budget.limit == SP_LIMIT_MEMORY)
                lua_gc(gen->L, LUA_GCCOLLECT);
        } else {
            struct sp_buf line = {0};
            size_t len;
            const char *msg;
            sp_lua_push_error_text(co, -1); /* never a metamethod: no unprotected error */
            lua_pushliteral(co, "\n");
            luaL_traceback(co, co, NULL, 0);
            lua_concat(co, 3);
            msg = lua_tolstring(co, -1, &len);
            sp_buf_printf(&line, "timer %s (%s) failed: ", t->name, t->source);
            sp_buf_add(&line, msg, len); /* whole, NUL bytes included */
            sp_log_text(SP_LOG_ERROR, fields, line.data, line.len);
            sp_buf_free(&line);
        }
    }
    if (req->cancel != NULL) {
        req->cancel(req->cancel_arg);
        req->cancel = NULL;
    }
    sp_req_release_pins(req); /* rolls back a transaction left open */
    luaL_unref(gen->L, LUA_REGISTRYINDEX, req->co_ref);
    free(req);
    if (t->every_s == 0)
        remove_timer(set, t); /* a one-shot is done */
    run_left(w);
    sp_gen_unref(gen); /* last: it may close the state, and the timers with it */
}

static void run(struct sp_timer *t)
{
    struct sp_gen *gen = t->set->gen;
    struct sp_host *w = t->set->w;
    struct sp_req *req = calloc(1, sizeof(*req));
    lua_State *co;

    if (req == NULL) {
        sp_log(SP_LOG_ERROR, "timer %s: out of memory; run skipped", t->name);
        return;
    }
    req->w = w;
    req->gen = gen;
    sp_gen_ref(gen);
    req->start_us = sp_now_us();
    req->on_done = run_done;
    req->on_done_arg = t;
    snprintf(req->id, sizeof(req->id), "timer:%s:%llu", t->name, ++t->set->seq);
    co = lua_newthread(gen->L);
    req->co_ref = luaL_ref(gen->L, LUA_REGISTRYINDEX);
    req->co = co;
    sp_gen_set_req(co, req);
    sp_gen_arm_limits(gen, co);
    lua_rawgeti(co, LUA_REGISTRYINDEX, t->fn_ref);
    t->running = req;
    run_arrived(w);
    sp_req_start(req, 0);
}

static void on_fire(evutil_socket_t fd, short what, void *arg)
{
    struct sp_timer *t = arg;
    struct sp_timers *set = t->set;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    if (set->stopped || set->w->draining)
        return;
    if (t->every_s > 0)
        arm(t, next_delay(t));
    if (t->running != NULL) {
        t->skipped++;
        metrics_timer_skip();
        sp_log(SP_LOG_DEBUG, "timer %s: the previous run is still going; this one is skipped",
               t->name);
        return;
    }
    run(t);
}

/* ---- start and stop ------------------------------------------------------------------ */

static int start_one(struct sp_timers *set, struct sp_timer *t)
{
    if ((t->ev = evtimer_new(set->w->base, on_fire, t)) == NULL) {
        sp_log(SP_LOG_ERROR, "timer %s: cannot create its event", t->name);
        return -1;
    }
    /* The first run of an `every` timer: somewhere in its first period. */
    arm(t, t->every_s > 0 ? t->every_s * (0.5 + 0.5 * random01()) : t->after_s);
    return 0;
}

void sp_timer_start(struct sp_host *w, struct sp_gen *gen)
{
    struct sp_timers *set = timers_of(gen->L);

    if (set == NULL || set->started || w->draining)
        return;
    set->w = w;
    set->started = 1;
    for (int i = 0; i < set->n; i++)
        start_one(set, set->list[i]);
    if (set->n > 0)
        sp_log(SP_LOG_DEBUG, "generation %llu: %d timer(s) started",
               (unsigned long long)gen->number, set->n);
}

void sp_timer_stop(struct sp_gen *gen)
{
    struct sp_timers *set = gen ? timers_of(gen->L) : NULL;

    if (set == NULL || set->stopped)
        return;
    set->stopped = 1;
    for (int i = 0; i < set->n; i++)
        if (set->list[i]->ev != NULL)
            event_del(set->list[i]->ev);
}

/* ---- the Lua side ---------------------------------------------------------------------- */

/* Where the script called from: "scripts/jobs.lua:12". */
static void caller(lua_State *L, char *buf, size_t cap)
{
    lua_Debug ar;

    snprintf(buf, cap, "?");
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(buf, cap, "%s:%d", ar.short_src, ar.currentline);
}

/* Adds a timer for fn (at index fn_idx) to the set. Raises on failure. */
static struct sp_timer *
add(lua_State *L, struct sp_timers *set, const char *name, double every, double after, int fn_idx)
{
    struct sp_timer *t;

    if (set->n == set->cap) {
        int cap = set->cap ? set->cap * 2 : 8;
        struct sp_timer **list = realloc(set->list, sizeof(*list) * (size_t)cap);
        if (list == NULL)
            luaL_error(L, "out of memory");
        set->list = list;
        set->cap = cap;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL)
        luaL_error(L, "out of memory");
    t->set = set;
    snprintf(t->name, sizeof(t->name), "%s", name);
    caller(L, t->source, sizeof(t->source));
    t->every_s = every;
    t->after_s = after;
    lua_pushvalue(L, fn_idx);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: t is not in the list yet */
    set->list[set->n++] = t;
    return t;
}

/* spacer.timer.every(name, seconds, fn): declared at a script's top level; every worker runs
 * fn() every seconds (a little more, at random) while this generation is current. */
static int l_timer_every(lua_State *L)
{
    struct sp_timers *set = timers_of(L);
    const char *name = sp_lua_checktext(L, 1, NULL);
    double every = luaL_checknumber(L, 2);

    luaL_checktype(L, 3, LUA_TFUNCTION);
    if (sp_gen_req(L) != NULL || set->started)
        return luaL_error(L, "spacer.timer.every: declare timers at a script's top level "
                             "(while the scripts load), not in a request or a timer");
    if (name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
        return luaL_error(L, "spacer.timer.every: a name of 1 to %d characters, please",
                          NAME_MAX_LEN);
    for (const char *p = name; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            return luaL_error(L,
                              "spacer.timer.every: the name \"%s\" has a space, a quote or "
                              "a character that is not ASCII",
                              name);
    if (!(every >= MIN_EVERY_S && every <= MAX_EVERY_S))
        return luaL_error(L, "spacer.timer.every: seconds must be from %g to %g", MIN_EVERY_S,
                          MAX_EVERY_S);
    for (int i = 0; i < set->n; i++)
        if (set->list[i]->every_s > 0 && strcmp(set->list[i]->name, name) == 0)
            return luaL_error(L, "spacer.timer.every: a timer named \"%s\" exists (%s)", name,
                              set->list[i]->source);
    add(L, set, name, every, 0, 3);
    return 0;
}

/* spacer.timer.after(seconds, fn) -> true | false: fn() once, seconds from now (at load time:
 * from when the generation starts serving) in this worker, if the generation is still
 * current then. Not durable: a restart or a reload forgets it. */
static int l_timer_after(lua_State *L)
{
    struct sp_timers *set = timers_of(L);
    double after = luaL_checknumber(L, 1);
    struct sp_timer *t;
    char name[NAME_MAX_LEN + 16];

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(after >= 0 && after <= MAX_AFTER_S))
        return luaL_error(L, "spacer.timer.after: seconds must be from 0 to %g", MAX_AFTER_S);
    if (sp_gen_req(L) != NULL && (!set->started || set->stopped)) {
        lua_pushboolean(L, 0); /* a test, or a generation already replaced */
        return 1;
    }
    if (set->one_shots >= MAX_ONE_SHOTS)
        return luaL_error(L, "spacer.timer.after: %d timers are pending already", MAX_ONE_SHOTS);
    snprintf(name, sizeof(name), "after:%llu", ++set->seq);
    t = add(L, set, name, 0, after, 2);
    set->one_shots++;
    if (set->started && start_one(set, t) != 0) {
        remove_timer(set, t);
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* spacer.timer.list() -> { {name, every, source, runs, errors, skipped, running}, ... }:
 * this worker's view, for the operators' routes. */
static int l_timer_list(lua_State *L)
{
    struct sp_timers *set = timers_of(L);
    int k = 0;

    lua_createtable(L, set->n, 0);
    for (int i = 0; i < set->n; i++) {
        const struct sp_timer *t = set->list[i];
        if (t->every_s == 0)
            continue;
        lua_createtable(L, 0, 7);
        lua_pushstring(L, t->name);
        lua_setfield(L, -2, "name");
        lua_pushnumber(L, t->every_s);
        lua_setfield(L, -2, "every");
        lua_pushstring(L, t->source);
        lua_setfield(L, -2, "source");
        lua_pushinteger(L, (lua_Integer)t->runs);
        lua_setfield(L, -2, "runs");
        lua_pushinteger(L, (lua_Integer)t->errors);
        lua_setfield(L, -2, "errors");
        lua_pushinteger(L, (lua_Integer)t->skipped);
        lua_setfield(L, -2, "skipped");
        lua_pushboolean(L, t->running != NULL);
        lua_setfield(L, -2, "running");
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

void sp_lua_open_timer(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"every", l_timer_every},
        {"after", l_timer_after},
        {"list", l_timer_list},
        {NULL, NULL},
    };
    struct sp_timers *set = lua_newuserdatauv(L, sizeof(*set), 0);

    memset(set, 0, sizeof(*set));
    set->gen = sp_gen_of(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_timers_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_timers);
    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "timer");
}
