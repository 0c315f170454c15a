/* lua_spacer.h: the C half of the `spacer` Lua module, one opener per part. */
#ifndef SP_LUA_SPACER_H
#define SP_LUA_SPACER_H

#include <lua.h>

#include "sp.h"

/* Each sets its functions on the table at the top of the stack (the spacer module). */
void sp_lua_open_json(lua_State *L);
void sp_lua_open_log(lua_State *L);
void sp_lua_open_time(lua_State *L);
void sp_lua_open_crypto(lua_State *L);
void sp_lua_open_auth(lua_State *L);
void sp_lua_open_db(lua_State *L);
void sp_lua_open_ops(lua_State *L);
void sp_lua_open_files(lua_State *L);
void sp_lua_open_cache(lua_State *L);

/* All of the above, NULL-terminated: what a generation is loaded with (sp_gen_load()). */
extern void (*const sp_lua_openers[])(lua_State *L);

/* Time zones: seconds since the epoch <-> a zone's wall clock, DST-correct (tzdata). */
int sp_time_parse(const char *s, const char *tz, int64_t *out, sp_err *err);
int sp_time_format(int64_t t, const char *tz, char *buf, size_t cap, sp_err *err);
/* spacer.time.format(epoch, zone) -> "2026-12-01T10:00:00+03:00" (spacer.db.json_with knows it
 * as a shaper and runs it without a Lua call) */
int sp_lua_time_format(lua_State *L);
/* What spacer.json.scaler(keys) answers: f(text, factor) -> raw JSON (json.h's sp_json_scale),
 * keys its upvalue (",amount,total,"); spacer.db.json_with runs it without a Lua call. */
int sp_lua_json_scale(lua_State *L);

/* spacer.json.object(v) -> v when it is a table, else a new empty table: a jsonb snapshot
 * shown as an object (spacer.db.json_with knows it as a shaper of a jsonb column and writes
 * the value without a Lua round trip) */
int sp_lua_json_object(lua_State *L);

/* The shared file (files.h) of a spacer.files.static() value at idx, or NULL when the value
 * is something else. The value's reference holds it while the value lives. */
struct sp_file *sp_lua_tofile(lua_State *L, int idx);

/* Raises a spacer.error with status, code and message from C.  [-0, +0, v] */
int sp_lua_http_error(lua_State *L, int status, const char *code, const char *message);

#endif
