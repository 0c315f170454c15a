/* pgjson.h: PostgreSQL result rows written straight to JSON text, without a Lua value per
 * row or field. The SQL's select list is the shape:
 *   - each column is a key, named as the column ("AS title");
 *   - "a.b" is key b of a nested object a (the columns of a are consecutive);
 *   - a column whose name starts with "_" is not written (it is the caller's: a total);
 *   - a row whose written columns are all NULL is left out (the empty page of a LEFT JOIN).
 * Values: NULL -> null; bool -> true/false; integers and numeric -> the number as PostgreSQL
 * wrote it; float4/float8 -> the number, with ".0" when it has no fraction (as the Lua
 * encoder writes floats); json/jsonb -> embedded as they are; timestamptz -> ISO 8601 with a
 * T and a full offset ("2026-12-01T10:00:00.5+03:00", the session's zone), timestamp without
 * one; one-dimensional text and integer arrays -> JSON arrays; anything else -> a string.
 * Knows libpq and JSON, never Lua or a table name. */
#ifndef SP_PGJSON_H
#define SP_PGJSON_H

#include <libpq-fe.h>

#include "sp.h"

/* Columns the caller writes itself (a value to reshape). has() is asked once per column
 * name; write() appends the JSON of one non-NULL value of such a column, 0 or -1 (then the
 * whole write stops with -1). */
struct sp_pgjson_hooks {
    int (*has)(void *arg, const char *column);
    int (*write)(void *arg, const PGresult *res, int row, int col, struct sp_buf *out);
    void *arg;
};

/* Appends the rows of res as a JSON array, or (one) the first written row's object alone.
 * hooks may be NULL. Returns the number of rows written (0 with one: nothing is appended),
 * or -1 when a hook failed. */
int sp_pgjson_write(const PGresult *res,
                    int one,
                    const struct sp_pgjson_hooks *hooks,
                    struct sp_buf *out);

/* Reads the next element of a one-dimensional array literal ({1,"a b",NULL}); *p starts just
 * after the '{'. Returns 0 at the end; else 1 with the element's text in item (unquoted,
 * NUL-terminated) and *is_null set for an unquoted NULL. */
int sp_pgjson_array_next(const char **p, struct sp_buf *item, int *is_null);

/* Appends jsonb's text v (as PostgreSQL writes it: ", " and ": " between tokens) as the Lua
 * encoder writes what spacer.json.decode reads from it, so that a value needs no Lua round
 * trip: no space between tokens; \b and \f in strings as \u0008 and \u000c (the only escapes
 * the two write differently); numbers as the decoder reads them and the encoder writes them
 * (an integer of 64 bits as it is, any other as a float: 2.50 -> 2.5, 7.0 -> 7.0). Object
 * keys keep their order. 0, or -1 with nothing appended when v is not such text. */
int sp_pgjson_jsonb(const char *v, size_t len, struct sp_buf *out);

/* Appends one text value of PostgreSQL type oid as JSON (the rules above). */
void sp_pgjson_value(const char *v, int len, unsigned int oid, struct sp_buf *out);

#endif
