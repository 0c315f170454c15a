/* pgjson.c: rows to JSON text (pgjson.h). Column names are read once per result; then each
 * value is copied or escaped straight from libpq's buffer into the output. */
#include "pgjson.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"

/* PostgreSQL type OIDs (pg_type.h). */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_INT2ARR = 1005,
    OID_INT4ARR = 1007,
    OID_TEXTARR = 1009,
    OID_VARCHARARR = 1015,
    OID_INT8ARR = 1016,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
    OID_JSONB = 3802,
};

struct col {
    size_t key, key_len;   /* in keys: "name": (escaped, after the group's dot) */
    size_t open, open_len; /* in keys: "group":{ when the column is in a nested object */
    const char *group;     /* the nested object's name, or NULL */
    size_t group_len;
    Oid type;
    int skip;   /* a "_" column */
    int hooked; /* written by the caller's hook */
};

static void add_timestamp(const char *v, int len, int with_zone, struct sp_buf *out)
{
    /* "2026-12-01 10:00:00.5+03" -> "2026-12-01T10:00:00.5+03:00" */
    sp_buf_reserve(out, (size_t)len + 6);
    sp_buf_addc(out, '"');
    if (len > 10 && v[10] == ' ') {
        sp_buf_add(out, v, 10);
        sp_buf_addc(out, 'T');
        sp_buf_add(out, v + 11, (size_t)len - 11);
    } else {
        sp_buf_add(out, v, (size_t)len);
    }
    if (with_zone && len >= 3 && (v[len - 3] == '+' || v[len - 3] == '-'))
        sp_buf_add(out, ":00", 3);
    sp_buf_addc(out, '"');
}

int sp_pgjson_array_next(const char **pp, struct sp_buf *item, int *is_null)
{
    const char *p = *pp;

    if (*p == '\0' || *p == '}')
        return 0;
    item->len = 0;
    sp_buf_add(item, "", 0); /* terminated, even when empty */
    *is_null = 0;
    if (*p == '"') { /* quoted: backslash escapes inside; the runs between copied whole */
        for (p++; *p && *p != '"';) {
            const char *run = p;
            while (*p && *p != '"' && *p != '\\')
                p++;
            sp_buf_add(item, run, (size_t)(p - run));
            if (*p == '\\' && p[1]) {
                sp_buf_addc(item, p[1]);
                p += 2;
            } else if (*p == '\\') {
                sp_buf_addc(item, *p++); /* a backslash at the very end: kept */
            }
        }
        if (*p == '"')
            p++;
    } else {
        const char *start = p;
        while (*p && *p != ',' && *p != '}')
            p++;
        sp_buf_add(item, start, (size_t)(p - start));
        *is_null = p - start == 4 && memcmp(start, "NULL", 4) == 0;
    }
    if (*p == ',')
        p++;
    *pp = p;
    return 1;
}

/* A one-dimensional array literal: {1,2,"a b",NULL}. */
static void add_array(const char *p, int is_int, struct sp_buf *out)
{
    struct sp_buf item = {0};
    int is_null, first = 1;

    sp_buf_addc(out, '[');
    if (*p != '{') {
        sp_json_add_string(out, p, strlen(p));
        sp_buf_addc(out, ']');
        return;
    }
    for (p++; sp_pgjson_array_next(&p, &item, &is_null);) {
        if (!first)
            sp_buf_addc(out, ',');
        first = 0;
        if (is_null)
            sp_buf_add(out, "null", 4);
        else if (is_int)
            sp_buf_add(out, item.data, item.len);
        else
            sp_json_add_string(out, item.data, item.len);
    }
    sp_buf_addc(out, ']');
    sp_buf_free(&item);
}

void sp_pgjson_value(const char *v, int len, unsigned int oid, struct sp_buf *out)
{
    switch (oid) {
    case OID_BOOL:
        if (v[0] == 't')
            sp_buf_add(out, "true", 4);
        else
            sp_buf_add(out, "false", 5);
        return;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
    case OID_JSON:
    case OID_JSONB:
        sp_buf_add(out, v, (size_t)len);
        return;
    case OID_NUMERIC:
        if (len > 0 && (v[0] == 'N' || v[0] == 'I' || v[1] == 'I'))
            sp_buf_add(out, "null", 4); /* NaN, Infinity: no JSON number */
        else
            sp_buf_add(out, v, (size_t)len);
        return;
    case OID_FLOAT4:
    case OID_FLOAT8:
        if (len > 0 && (v[0] == 'N' || v[0] == 'I' || v[1] == 'I')) {
            sp_buf_add(out, "null", 4);
            return;
        }
        sp_buf_add(out, v, (size_t)len);
        if (memchr(v, '.', (size_t)len) == NULL && memchr(v, 'e', (size_t)len) == NULL)
            sp_buf_add(out, ".0", 2); /* a float stays a float: 500.0 */
        return;
    case OID_TIMESTAMPTZ:
        add_timestamp(v, len, 1, out);
        return;
    case OID_TIMESTAMP:
        add_timestamp(v, len, 0, out);
        return;
    case OID_INT2ARR:
    case OID_INT4ARR:
    case OID_INT8ARR:
        add_array(v, 1, out);
        return;
    case OID_TEXTARR:
    case OID_VARCHARARR:
        add_array(v, 0, out);
        return;
    default:
        sp_json_add_string(out, v, (size_t)len);
        return;
    }
}

int sp_pgjson_jsonb(const char *v, size_t len, struct sp_buf *out)
{
    size_t start = out->len, i = 0;

    sp_buf_reserve(out, len); /* the text less its spaces, but for \b, \f and big numbers */
    while (i < len) {
        char c = v[i];
        switch (c) {
        case ' ':
        case '\n':
        case '\t':
        case '\r': i++; continue;
        case '{':
        case '}':
        case '[':
        case ']':
        case ',':
        case ':':
            sp_buf_addc(out, c);
            i++;
            continue;
        case '"': { /* PostgreSQL escapes \b \f \n \r \t \" \\ and \u00XX only */
            size_t j = i + 1, from = i;
            const char *q = memchr(v + j, '"', len - j);
            if (q != NULL && memchr(v + j, '\\', (size_t)(q - v) - j) == NULL) {
                sp_buf_add(out, v + i, (size_t)(q - v) + 1 - i); /* no escape: as it is */
                i = (size_t)(q - v) + 1;
                continue;
            }
            for (; j < len && v[j] != '"'; j++) {
                if (v[j] != '\\')
                    continue;
                if (j + 1 >= len)
                    break;
                if (v[j + 1] == 'b' || v[j + 1] == 'f') {
                    sp_buf_add(out, v + from, j - from);
                    sp_buf_add(out, v[j + 1] == 'b' ? "\\u0008" : "\\u000c", 6);
                    from = j + 2;
                }
                j++;
            }
            if (j >= len || v[j] != '"')
                goto bad; /* unterminated */
            sp_buf_add(out, v + from, j + 1 - from);
            i = j + 1;
            continue;
        }
        default: break;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < len && (v[j] == '-' || v[j] == '+' || v[j] == '.' || v[j] == 'e' ||
                               v[j] == 'E' || (v[j] >= '0' && v[j] <= '9')))
                j++;
            sp_json_add_number_text(out, v + i, j - i); /* jsonb writes valid numbers */
            i = j;
        } else if (len - i >= 4 &&
                   (memcmp(v + i, "true", 4) == 0 || memcmp(v + i, "null", 4) == 0)) {
            sp_buf_add(out, v + i, 4);
            i += 4;
        } else if (len - i >= 5 && memcmp(v + i, "false", 5) == 0) {
            sp_buf_add(out, v + i, 5);
            i += 5;
        } else {
            goto bad;
        }
    }
    return 0;
bad:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return -1;
}

static int row_empty(const PGresult *res, int r, const struct col *cols, int n)
{
    for (int c = 0; c < n; c++)
        if (!cols[c].skip && !PQgetisnull(res, r, c))
            return 0;
    return 1;
}

static int add_row(const PGresult *res,
                   int r,
                   const struct col *cols,
                   int n,
                   const char *keys,
                   const struct sp_pgjson_hooks *hooks,
                   struct sp_buf *out)
{
    const char *open_group = NULL; /* the nested object being written */
    size_t open_len = 0;
    int first = 1, first_in_group = 1;

    sp_buf_addc(out, '{');
    for (int c = 0; c < n; c++) {
        const struct col *k = &cols[c];
        if (k->skip)
            continue;
        if (open_group != NULL && (k->group == NULL || k->group_len != open_len ||
                                   memcmp(k->group, open_group, open_len) != 0)) {
            sp_buf_addc(out, '}');
            open_group = NULL;
        }
        if (k->group != NULL && open_group == NULL) {
            if (!first)
                sp_buf_addc(out, ',');
            first = 0;
            sp_buf_add(out, keys + k->open, k->open_len);
            open_group = k->group;
            open_len = k->group_len;
            first_in_group = 1;
        }
        if (open_group != NULL) {
            if (!first_in_group)
                sp_buf_addc(out, ',');
            first_in_group = 0;
        } else {
            if (!first)
                sp_buf_addc(out, ',');
            first = 0;
        }
        sp_buf_add(out, keys + k->key, k->key_len);
        if (PQgetisnull(res, r, c))
            sp_buf_add(out, "null", 4);
        else if (k->hooked && hooks->write(hooks->arg, res, r, c, out) != 0)
            return -1;
        else if (!k->hooked)
            sp_pgjson_value(PQgetvalue(res, r, c), PQgetlength(res, r, c), k->type, out);
    }
    if (open_group != NULL)
        sp_buf_addc(out, '}');
    sp_buf_addc(out, '}');
    return 0;
}

int sp_pgjson_write(const PGresult *res,
                    int one,
                    const struct sp_pgjson_hooks *hooks,
                    struct sp_buf *out)
{
    int nrows = PQntuples(res), ncols = PQnfields(res), written = 0;
    struct col small[32], *cols = small;
    struct sp_buf keys = {0}; /* every column's "key": once, not once per row */

    if (ncols > (int)SP_ARRAY_LEN(small) &&
        (cols = malloc(sizeof(*cols) * (size_t)ncols)) == NULL) {
        sp_buf_add(out, one ? "null" : "[]", one ? 4 : 2); /* no memory: say nothing */
        return 0;
    }
    for (int c = 0; c < ncols; c++) {
        const char *name = PQfname(res, c), *dot = strchr(name, '.');
        cols[c].skip = name[0] == '_';
        cols[c].hooked = hooks != NULL && !cols[c].skip && hooks->has(hooks->arg, name);
        cols[c].type = PQftype(res, c);
        cols[c].group = dot ? name : NULL;
        cols[c].group_len = dot ? (size_t)(dot - name) : 0;
        cols[c].open = keys.len;
        if (dot) {
            sp_json_add_string(&keys, name, (size_t)(dot - name));
            sp_buf_add(&keys, ":{", 2);
        }
        cols[c].open_len = keys.len - cols[c].open;
        cols[c].key = keys.len;
        sp_json_add_string(&keys, dot ? dot + 1 : name, strlen(dot ? dot + 1 : name));
        sp_buf_addc(&keys, ':');
        cols[c].key_len = keys.len - cols[c].key;
    }
    /* Roughly the size libpq holds, so the buffer grows once. */
    sp_buf_reserve(out, (size_t)nrows * (size_t)ncols * 24 + 2);
    if (!one)
        sp_buf_addc(out, '[');
    for (int r = 0; r < nrows; r++) {
        if (row_empty(res, r, cols, ncols))
            continue;
        if (written > 0)
            sp_buf_addc(out, ',');
        if (add_row(res, r, cols, ncols, keys.data, hooks, out) != 0) {
            written = -1;
            break;
        }
        written++;
        if (one)
            break;
    }
    if (!one && written >= 0)
        sp_buf_addc(out, ']');
    if (cols != small)
        free(cols);
    sp_buf_free(&keys);
    return written;
}
