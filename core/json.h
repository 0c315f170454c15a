/* json.h: JSON text <-> Lua values, directly on the Lua stack.
 * Objects become plain tables, arrays tables carrying the array metatable (so [] stays []),
 * null the light userdata spacer.json.null. Integers that fit in 64 bits stay Lua integers. */
#ifndef SP_JSON_H
#define SP_JSON_H

#include <lua.h>

#include "sp.h"

#define SP_JSON_MAX_DEPTH 64

/* Registers the null sentinel and the array metatable in L's registry. Call once per state. */
void sp_json_init(lua_State *L);
/* Pushes the value of text s[0..len) and returns 0, or pushes nothing and returns -1 (err says
 * where: "invalid json at byte 12: ..."). Strings must be valid UTF-8. [-0, +1|0, m] */
int sp_json_decode(lua_State *L, const char *s, size_t len, int max_depth, sp_err *err);
/* Appends the value at idx to out. Tables with the array metatable, or non-empty sequences,
 * are arrays; other tables objects with string keys. [-0, +0, m] */
int sp_json_encode(lua_State *L, int idx, struct sp_buf *out, int max_depth, sp_err *err);

void sp_json_push_null(lua_State *L);
/* Pushes a raw JSON value: s (valid JSON, which the caller vouches for: PostgreSQL's json
 * output, or text that was decoded once) is written by the encoder as it is. */
void sp_json_push_raw(lua_State *L, const char *s, size_t len);
int sp_json_is_raw(lua_State *L, int idx);
int sp_json_is_null(lua_State *L, int idx);
/* Pushes a new empty table marked as a JSON array, sized for n items. [-0, +1, m] */
void sp_json_new_array(lua_State *L, int n);
/* Marks the table at idx as a JSON array. */
void sp_json_mark_array(lua_State *L, int idx);

/* Appends the JSON text[0..len) as decoding and encoding it again would write it (compact,
 * members in key order), with each integer that is the value of a key listed in keys
 * (",amount,total,": comma-separated, commas around) divided by factor, written as a float:
 * 50050 -> 500.5 for factor 100. -1 (out as it was) for invalid JSON, and for what this
 * fast path leaves to the decoder: strings with escapes, numbers of 64 characters or more. */
int sp_json_scale(const char *text, size_t len, const char *keys, size_t keys_len,
                  double factor, struct sp_buf *out);
/* Appends s as a JSON string literal, quotes included. */
void sp_json_add_string(struct sp_buf *out, const char *s, size_t len);

/* Appends the float v as the encoder writes a Lua float: the shortest text that reads back
 * (%.14g, else %.17g), ".0" when it has no fraction (500.0), null when not finite. */
void sp_json_add_double(struct sp_buf *out, double v);
/* Appends the valid JSON number s[0..n) as decoding and encoding it again would write it: an
 * integer that fits 64 bits as an integer ("-0" is 0), any other as a float (3.50 -> 3.5,
 * 100000000000000000000 -> 1e+20). Any length. */
void sp_json_add_number_text(struct sp_buf *out, const char *s, size_t n);

#endif
