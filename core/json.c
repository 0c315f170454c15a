/* json.c: a JSON codec that reads into and writes from the Lua stack without an intermediate
 * tree. Written here rather than through cJSON because cJSON keeps every number as a double
 * (a 64-bit id or amount above 2^53 would change) and builds a tree per document. */
#include "json.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char null_tag;            /* its address is spacer.json.null */
static const char array_mt_key = 'a'; /* registry key of the array metatable */
static const char raw_mt_key = 'r';   /* registry key of the raw JSON metatable */

static int raw_tostring(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), lua_rawlen(L, 1));
    return 1;
}

void sp_json_init(lua_State *L)
{
    lua_newtable(L);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    lua_newtable(L);
    lua_pushliteral(L, "spacer.json.raw");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "spacer.json.raw");
    lua_setfield(L, -2, "__metatable"); /* scripts cannot forge one with setmetatable */
    lua_pushcfunction(L, raw_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &raw_mt_key);
}

void sp_json_push_raw(lua_State *L, const char *s, size_t len)
{
    void *p = lua_newuserdatauv(L, len, 0);

    if (len > 0)
        memcpy(p, s, len);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &raw_mt_key);
    lua_setmetatable(L, -2);
}

int sp_json_is_raw(lua_State *L, int idx)
{
    int yes = 0;

    if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &raw_mt_key);
        yes = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    return yes;
}

void sp_json_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, &null_tag);
}

int sp_json_is_null(lua_State *L, int idx)
{
    return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == &null_tag;
}

void sp_json_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    lua_setmetatable(L, idx);
}

void sp_json_new_array(lua_State *L, int n)
{
    lua_createtable(L, n, 0);
    sp_json_mark_array(L, -1);
}

/* ---- decoding ------------------------------------------------------------ */

struct dec {
    lua_State *L;
    const char *s, *p, *e;
    int max_depth;
    sp_err *err;
    struct sp_buf str; /* scratch for strings with escapes */
};

static int dec_fail(struct dec *d, const char *what)
{
    sp_err_set(d->err, "invalid json at byte %zu: %s", (size_t)(d->p - d->s), what);
    return -1;
}

static void skip_ws(struct dec *d)
{
    while (d->p < d->e && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void add_utf8(struct sp_buf *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xe0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    else
        u[0] = (char)(0xf0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    sp_buf_add(b, u, n);
}

/* d->p is past the opening quote. Pushes the string. */
static int dec_string(struct dec *d)
{
    const char *start = d->p;

    /* Fast path: no escapes. */
    while (d->p < d->e && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20)
        d->p++;
    if (d->p < d->e && *d->p == '"') {
        if (!sp_utf8_valid(start, (size_t)(d->p - start)))
            return dec_fail(d, "string is not valid UTF-8");
        lua_pushlstring(d->L, start, (size_t)(d->p - start));
        d->p++;
        return 0;
    }
    d->str.len = 0;
    sp_buf_add(&d->str, start, (size_t)(d->p - start));
    while (d->p < d->e) {
        unsigned char c = (unsigned char)*d->p;
        if (c == '"') {
            d->p++;
            if (!sp_utf8_valid(d->str.data, d->str.len))
                return dec_fail(d, "string is not valid UTF-8");
            lua_pushlstring(d->L, d->str.data, d->str.len);
            return 0;
        }
        if (c < 0x20)
            return dec_fail(d, "control character in string");
        if (c != '\\') {
            sp_buf_addc(&d->str, (char)c);
            d->p++;
            continue;
        }
        if (++d->p >= d->e)
            break;
        switch (*d->p) {
        case '"': sp_buf_addc(&d->str, '"'); break;
        case '\\': sp_buf_addc(&d->str, '\\'); break;
        case '/': sp_buf_addc(&d->str, '/'); break;
        case 'b': sp_buf_addc(&d->str, '\b'); break;
        case 'f': sp_buf_addc(&d->str, '\f'); break;
        case 'n': sp_buf_addc(&d->str, '\n'); break;
        case 'r': sp_buf_addc(&d->str, '\r'); break;
        case 't': sp_buf_addc(&d->str, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (d->e - d->p < 5 || hex4(d->p + 1, &cp) != 0)
                return dec_fail(d, "bad \\u escape");
            d->p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (d->e - d->p < 7 || d->p[1] != '\\' || d->p[2] != 'u' ||
                    hex4(d->p + 3, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return dec_fail(d, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                d->p += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return dec_fail(d, "unpaired surrogate in \\u escape");
            }
            add_utf8(&d->str, cp);
            break;
        }
        default: return dec_fail(d, "bad escape");
        }
        d->p++;
    }
    return dec_fail(d, "unterminated string");
}

static int dec_number(struct dec *d)
{
    const char *start = d->p;
    int is_float = 0;
    char tmp[64];
    const char *text;
    size_t n;

    if (d->p < d->e && *d->p == '-')
        d->p++;
    if (d->p >= d->e || *d->p < '0' || *d->p > '9')
        return dec_fail(d, "bad number");
    if (*d->p == '0' && d->p + 1 < d->e && d->p[1] >= '0' && d->p[1] <= '9')
        return dec_fail(d, "leading zero in number");
    while (d->p < d->e && *d->p >= '0' && *d->p <= '9')
        d->p++;
    if (d->p < d->e && *d->p == '.') {
        is_float = 1;
        if (++d->p >= d->e || *d->p < '0' || *d->p > '9')
            return dec_fail(d, "bad fraction");
        while (d->p < d->e && *d->p >= '0' && *d->p <= '9')
            d->p++;
    }
    if (d->p < d->e && (*d->p == 'e' || *d->p == 'E')) {
        is_float = 1;
        d->p++;
        if (d->p < d->e && (*d->p == '+' || *d->p == '-'))
            d->p++;
        if (d->p >= d->e || *d->p < '0' || *d->p > '9')
            return dec_fail(d, "bad exponent");
        while (d->p < d->e && *d->p >= '0' && *d->p <= '9')
            d->p++;
    }
    n = (size_t)(d->p - start);
    if (n < sizeof(tmp)) {
        memcpy(tmp, start, n);
        tmp[n] = '\0';
        text = tmp;
    } else { /* a long number is still a number: 0.1000...0001 */
        d->str.len = 0;
        sp_buf_add(&d->str, start, n);
        text = d->str.data;
    }
    if (!is_float) {
        errno = 0;
        long long v = strtoll(text, NULL, 10);
        if (errno == 0) {
            lua_pushinteger(d->L, (lua_Integer)v);
            return 0;
        }
    }
    lua_pushnumber(d->L, strtod(text, NULL)); /* beyond 64 bits: a float, as Lua would */
    return 0;
}

static int dec_value(struct dec *d, int depth);

static int dec_lit(struct dec *d, const char *lit, size_t n)
{
    if ((size_t)(d->e - d->p) < n || memcmp(d->p, lit, n) != 0)
        return dec_fail(d, "unexpected character");
    d->p += n;
    return 0;
}

static int dec_array(struct dec *d, int depth)
{
    lua_Integer i = 0;

    sp_json_new_array(d->L, 0);
    skip_ws(d);
    if (d->p < d->e && *d->p == ']') {
        d->p++;
        return 0;
    }
    for (;;) {
        if (dec_value(d, depth) != 0)
            return -1;
        lua_rawseti(d->L, -2, ++i);
        skip_ws(d);
        if (d->p < d->e && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->e && *d->p == ']') {
            d->p++;
            return 0;
        }
        return dec_fail(d, "expected , or ] in array");
    }
}

static int dec_object(struct dec *d, int depth)
{
    lua_createtable(d->L, 0, 4); /* room for a small object: fewer rehashes */
    skip_ws(d);
    if (d->p < d->e && *d->p == '}') {
        d->p++;
        return 0;
    }
    for (;;) {
        skip_ws(d);
        if (d->p >= d->e || *d->p != '"')
            return dec_fail(d, "expected a string key");
        d->p++;
        if (dec_string(d) != 0)
            return -1;
        skip_ws(d);
        if (d->p >= d->e || *d->p != ':')
            return dec_fail(d, "expected : after key");
        d->p++;
        if (dec_value(d, depth) != 0)
            return -1;
        lua_rawset(d->L, -3); /* Stack: t, k, v -> t */
        skip_ws(d);
        if (d->p < d->e && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->e && *d->p == '}') {
            d->p++;
            return 0;
        }
        return dec_fail(d, "expected , or } in object");
    }
}

static int dec_value(struct dec *d, int depth)
{
    skip_ws(d);
    if (d->p >= d->e)
        return dec_fail(d, "unexpected end of input");
    if (!lua_checkstack(d->L, 3))
        return dec_fail(d, "nested too deeply");
    switch (*d->p) {
    case '{':
    case '[':
        if (depth >= d->max_depth)
            return dec_fail(d, "nested too deeply");
        return *d->p++ == '{' ? dec_object(d, depth + 1) : dec_array(d, depth + 1);
    case '"': d->p++; return dec_string(d);
    case 't':
        if (dec_lit(d, "true", 4) != 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_lit(d, "false", 5) != 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_lit(d, "null", 4) != 0)
            return -1;
        sp_json_push_null(d->L);
        return 0;
    default: return dec_number(d);
    }
}

int sp_json_decode(lua_State *L, const char *s, size_t len, int max_depth, sp_err *err)
{
    struct dec d = {L, s, s, s + len, max_depth, err, {0}};
    int top = lua_gettop(L), rc = -1;

    if (dec_value(&d, 0) != 0)
        goto done;
    skip_ws(&d);
    if (d.p != d.e) {
        dec_fail(&d, "trailing characters");
        goto done;
    }
    rc = 0;
done:
    sp_buf_free(&d.str);
    lua_settop(L, rc == 0 ? top + 1 : top); /* the value alone, or nothing */
    return rc;
}

/* ---- encoding ------------------------------------------------------------ */

void sp_json_add_string(struct sp_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *d;
    size_t i = 0;

    sp_buf_reserve(out, len * 6 + 2); /* the worst case: every byte a \u00XX */
    d = out->data + out->len;
    *d++ = '"';
    while (i < len) {
        uint64_t w;
        while (i + 8 <= len) { /* the common case: runs of plain text, 8 bytes at a time */
            memcpy(&w, s + i, 8);
            if (sp_word_needs_json_escape(w))
                break;
            memcpy(d, s + i, 8);
            d += 8, i += 8;
        }
        if (i >= len)
            break;
        unsigned char c = (unsigned char)s[i++];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *d++ = (char)c;
            continue;
        }
        *d++ = '\\';
        switch (c) {
        case '"': *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '\n': *d++ = 'n'; break;
        case '\r': *d++ = 'r'; break;
        case '\t': *d++ = 't'; break;
        default:
            *d++ = 'u', *d++ = '0', *d++ = '0', *d++ = hex[c >> 4], *d++ = hex[c & 15];
        }
    }
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
}

/* Writes n in decimal into tmp; the length. */
static int format_int(long long n, char *tmp)
{
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    int len = n < 0;

    tmp[0] = '-';
    len += (int)sp_fmt_u64(tmp + len, u);
    tmp[len] = '\0';
    return len;
}

/* The usual float of an API (an amount, a duration: a few decimals): when v is m / 10^k for an
 * integer m of at most 14 digits and k <= 3, that decimal reads back as v, so it is exactly
 * what %.14g writes (v is closer to it than half a step of the 14-digit grid). The length,
 * or 0 for any other number (the slow path decides). */
static int format_short_float(double v, char *tmp)
{
    static const double pow10[] = {1, 10, 100, 1000};

    if (v == 0 && signbit(v))
        return 0;
    for (int k = 0; k <= 3; k++) {
        double scaled = v * pow10[k];
        if (!(fabs(scaled) < 1e14))
            return 0;
        long long m = llround(scaled);
        if ((double)m / pow10[k] != v)
            continue;
        long long p = (long long)pow10[k], whole = m / p, frac = m % p;
        int n = 0;
        if (m < 0) {
            tmp[n++] = '-';
            whole = -whole, frac = -frac;
        }
        n += format_int(whole, tmp + n);
        if (k > 0) {
            tmp[n++] = '.';
            for (long long d = p / 10; d > 0; d /= 10)
                tmp[n++] = (char)('0' + (frac / d) % 10);
            while (tmp[n - 1] == '0') /* the smallest k was tried first: never the point */
                n--;
        }
        tmp[n] = '\0';
        return n;
    }
    return 0;
}

void sp_json_add_double(struct sp_buf *out, double v)
{
    char tmp[64];
    int n;

    if (!isfinite(v)) {
        sp_buf_add(out, "null", 4);
        return;
    }
    if ((n = format_short_float(v, tmp)) == 0) {
        n = snprintf(tmp, sizeof(tmp), "%.14g", v);
        if (strtod(tmp, NULL) != v)
            n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    }
    if (strpbrk(tmp, ".eEn") == NULL)
        tmp[n++] = '.', tmp[n++] = '0', tmp[n] = '\0'; /* a float stays a float: 500.0 */
    sp_buf_add(out, tmp, (size_t)n);
}

void sp_json_add_number_text(struct sp_buf *out, const char *s, size_t n)
{
    char small[64];
    struct sp_buf big = {0};
    const char *text = small;
    size_t digits = n - (s[0] == '-');
    int plain = digits <= 18; /* an integer of this many digits fits: no overflow to check */

    for (size_t i = s[0] == '-'; plain && i < n; i++)
        plain = s[i] >= '0' && s[i] <= '9';
    if (plain) { /* most numbers (ids): written as they came, no leading zeros in JSON */
        if (digits == 1 && s[n - 1] == '0')
            sp_buf_addc(out, '0'); /* -0 too */
        else
            sp_buf_add(out, s, n);
        return;
    }
    if (n < sizeof(small)) {
        memcpy(small, s, n);
        small[n] = '\0';
    } else {
        sp_buf_add(&big, s, n);
        text = big.data;
    }
    if (strpbrk(text, ".eE") == NULL) {
        errno = 0;
        long long v = strtoll(text, NULL, 10);
        if (errno == 0) {
            int len = format_int(v, small);
            sp_buf_add(out, small, (size_t)len);
            sp_buf_free(&big);
            return;
        }
    }
    sp_json_add_double(out, strtod(text, NULL));
    sp_buf_free(&big);
}

static void add_number(struct sp_buf *out, lua_State *L, int idx)
{
    char tmp[24];
    int n;

    if (lua_isinteger(L, idx)) {
        n = format_int((long long)lua_tointeger(L, idx), tmp);
        sp_buf_add(out, tmp, (size_t)n);
        return;
    }
    sp_json_add_double(out, lua_tonumber(L, idx));
}

/* 1 when the table at idx encodes as an array; *n is its length. */
static int table_is_array(lua_State *L, int idx, lua_Integer *n)
{
    int marked = 0;
    lua_Integer count = 0;

    if (lua_getmetatable(L, idx)) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
        marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    *n = (lua_Integer)lua_rawlen(L, idx);
    if (marked)
        return 1;
    if (*n == 0)
        return 0; /* an unmarked empty table is {} */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > *n) {
            lua_pop(L, 1);
            return 0; /* keys 1..n only: {[0] = x, nil, y, z} must not lose its [0] */
        }
        count++;
    }
    return count == *n;
}

static int enc_value(lua_State *L, int idx, struct sp_buf *out, int depth, int max_depth,
                     sp_err *err);

/* An object's members are written in the order of their keys' bytes. Lua's own table order
 * depends on a hash seed that each Lua state draws from the clock and its addresses, so without
 * sorting two workers — or two instances — could write the same table in different orders and
 * give one answer two ETags. Each member's key and value are copied onto the stack (the key
 * below, so the one on top stays lua_next's), then sorted by reference: no key is hashed
 * twice. */
struct member {
    const char *key;
    size_t len;
    int slot; /* the key's stack slot; the value is the one above */
};

/* Keys in the order of their bytes, a prefix first: the order members are written in. */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    return c ? c : (alen > blen) - (alen < blen);
}

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;

    return key_cmp(x->key, x->len, y->key, y->len);
}

/* The members array m (n of *cap in use; at first the caller's small one) doubled: the new
 * array, or NULL out of memory (m is then left as it was, still the caller's). */
static void *grow(void *m, const void *small, size_t *cap, size_t n, size_t size)
{
    void *bigger = malloc(2 * *cap * size);

    if (bigger == NULL)
        return NULL;
    memcpy(bigger, m, n * size);
    if (m != small)
        free(m);
    *cap *= 2;
    return bigger;
}

static int enc_object(lua_State *L, int idx, struct sp_buf *out, int depth, int max_depth,
                      sp_err *err)
{
    struct member small[32], *m = small;
    size_t n = 0, cap = sizeof(small) / sizeof(small[0]);
    int base = lua_gettop(L), rc = -1;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int t = lua_type(L, -2);

        if (t != LUA_TNUMBER && t != LUA_TSTRING) {
            sp_err_set(err, "cannot encode json: object key of type %s", luaL_typename(L, -2));
            goto done;
        }
        if (!lua_checkstack(L, 4)) {
            sp_err_set(err, "cannot encode json: out of stack");
            goto done;
        }
        if (n == cap) {
            struct member *bigger = grow(m, small, &cap, n, sizeof(*m));
            if (bigger == NULL) {
                sp_err_set(err, "cannot encode json: out of memory");
                goto done;
            }
            m = bigger;
        }
        /* Stack: k, v -> k, v, k: the lower k is this member's key (a number becomes its
         * string there, which lua_next never sees), the upper one lua_next's. */
        lua_pushvalue(L, -2);
        m[n].slot = lua_gettop(L) - 2;
        m[n].key = lua_tolstring(L, m[n].slot, &m[n].len);
        n++;
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), member_cmp);
    sp_buf_addc(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sp_buf_addc(out, ',');
        sp_json_add_string(out, m[i].key, m[i].len);
        sp_buf_addc(out, ':');
        if (enc_value(L, m[i].slot + 1, out, depth + 1, max_depth, err) != 0)
            goto done;
    }
    sp_buf_addc(out, '}');
    rc = 0;
done:
    if (m != small)
        free(m);
    lua_settop(L, base);
    return rc;
}

static int enc_value(lua_State *L, int idx, struct sp_buf *out, int depth, int max_depth,
                     sp_err *err)
{
    size_t len;
    const char *s;
    lua_Integer n;

    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: sp_buf_add(out, "null", 4); return 0;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            sp_buf_add(out, "true", 4);
        else
            sp_buf_add(out, "false", 5);
        return 0;
    case LUA_TNUMBER: add_number(out, L, idx); return 0;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        sp_json_add_string(out, s, len);
        return 0;
    case LUA_TLIGHTUSERDATA:
        if (sp_json_is_null(L, idx)) {
            sp_buf_add(out, "null", 4);
            return 0;
        }
        break;
    case LUA_TUSERDATA:
        if (sp_json_is_raw(L, idx)) {
            sp_buf_add(out, lua_touserdata(L, idx), lua_rawlen(L, idx));
            return 0;
        }
        break;
    case LUA_TTABLE:
        if (depth >= max_depth) {
            sp_err_set(err, "cannot encode json: nested deeper than %d", max_depth);
            return -1;
        }
        if (!lua_checkstack(L, 4)) {
            sp_err_set(err, "cannot encode json: out of stack");
            return -1;
        }
        if (table_is_array(L, idx, &n)) {
            sp_buf_addc(out, '[');
            for (lua_Integer i = 1; i <= n; i++) {
                if (i > 1)
                    sp_buf_addc(out, ',');
                lua_rawgeti(L, idx, i);
                int rc = enc_value(L, -1, out, depth + 1, max_depth, err);
                lua_pop(L, 1);
                if (rc != 0)
                    return -1;
            }
            sp_buf_addc(out, ']');
            return 0;
        }
        return enc_object(L, idx, out, depth, max_depth, err);
    default: break;
    }
    sp_err_set(err, "cannot encode json: value of type %s", luaL_typename(L, idx));
    return -1;
}

int sp_json_encode(lua_State *L, int idx, struct sp_buf *out, int max_depth, sp_err *err)
{
    int top = lua_gettop(L);
    int rc = enc_value(L, idx, out, 0, max_depth, err);

    lua_settop(L, top);
    return rc;
}

/* ---- scaling amounts in JSON text ------------------------------------------ */

struct scale {
    const char *p, *e;
    const char *keys; /* ",amount,total," */
    size_t keys_len;
    double factor;
    struct sp_buf *out;
};

static void sc_ws(struct scale *s)
{
    while (s->p < s->e && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string without escapes (PostgreSQL writes few): its content in *str, *len. -1 for one
 * with a backslash, or unterminated: the caller decodes those the slow way. */
static int sc_string(struct scale *s, const char **str, size_t *len)
{
    const char *start;

    if (s->p >= s->e || *s->p != '"')
        return -1;
    start = ++s->p;
    while (s->p < s->e && *s->p != '"') {
        if (*s->p == '\\' || (unsigned char)*s->p < 0x20)
            return -1;
        s->p++;
    }
    if (s->p >= s->e)
        return -1;
    *str = start;
    *len = (size_t)(s->p - start);
    s->p++;
    return 0;
}

static int sc_key_scaled(const struct scale *s, const char *key, size_t len)
{
    const char *end = s->keys + s->keys_len;

    /* ",amount,total,": from one comma to the next, each name compared once */
    for (const char *k = s->keys; k + len + 2 <= end;) {
        const char *next = memchr(k + 1, ',', (size_t)(end - k - 1));
        if (next == NULL)
            return 0;
        if ((size_t)(next - k - 1) == len && memcmp(k + 1, key, len) == 0)
            return 1;
        k = next;
    }
    return 0;
}

/* A number as the decoder reads it and the encoder writes it back; divided by the factor
 * when it is an integer and scaled. */
static int sc_number(struct scale *s, int scaled)
{
    const char *start = s->p;
    char tmp[64];
    int is_float = 0;
    size_t n;

    if (s->p < s->e && *s->p == '-')
        s->p++;
    if (s->p >= s->e || *s->p < '0' || *s->p > '9' ||
        (*s->p == '0' && s->p + 1 < s->e && s->p[1] >= '0' && s->p[1] <= '9'))
        return -1; /* what the decoder refuses: -, .5, 01 */
    while (s->p < s->e && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' ||
                           *s->p == 'E' || *s->p == '+' || *s->p == '-')) {
        if (*s->p < '0' || *s->p > '9')
            is_float = 1;
        s->p++;
    }
    n = (size_t)(s->p - start);
    if (n >= sizeof(tmp) || start[n - 1] < '0' || start[n - 1] > '9')
        return -1;
    const char *dot = memchr(start, '.', n);
    if (dot != NULL && (dot[1] < '0' || dot[1] > '9'))
        return -1; /* 1.e5 */
    char *end;
    memcpy(tmp, start, n);
    tmp[n] = '\0';
    if (is_float) { /* all of it a number: not 1-2 */
        strtod(tmp, &end);
        if (*end != '\0')
            return -1;
    } else if (scaled) {
        errno = 0;
        long long v = strtoll(tmp, &end, 10);
        if (errno != 0 || *end != '\0')
            return -1;
        sp_json_add_double(s->out, (double)v / s->factor);
        return 0;
    }
    sp_json_add_number_text(s->out, start, n);
    return 0;
}

static int sc_value(struct scale *s, int scaled, int depth);

/* An object's members, in the order of their keys' bytes as the encoder writes them: each
 * "key":value is written; unless they came in that order, they are then copied out and
 * written back sorted. */
struct sc_member {
    const char *key;
    size_t len, from, to;
};

static int sc_object(struct scale *s, int depth)
{
    struct sc_member small[16], *m = small;
    size_t n = 0, cap = SP_ARRAY_LEN(small), open;
    const char *str;
    size_t len;
    int rc = -1, sorted = 1;
    char small_copy[512], *copy = NULL, *from;

    sp_buf_addc(s->out, '{');
    open = s->out->len;
    for (;;) {
        sc_ws(s);
        if (sc_string(s, &str, &len) != 0)
            goto done;
        if (n == cap) {
            struct sc_member *bigger = grow(m, small, &cap, n, sizeof(*m));
            if (bigger == NULL)
                goto done;
            m = bigger;
        }
        if (n > 0)
            sp_buf_addc(s->out, ',');
        m[n].key = str, m[n].len = len, m[n].from = s->out->len;
        sp_buf_add(s->out, str - 1, len + 2);
        sc_ws(s);
        if (s->p >= s->e || *s->p++ != ':')
            goto done;
        sp_buf_addc(s->out, ':');
        if (sc_value(s, sc_key_scaled(s, str, len), depth + 1) != 0)
            goto done;
        m[n++].to = s->out->len;
        sc_ws(s);
        if (s->p < s->e && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->e && *s->p == '}') {
            s->p++;
            break;
        }
        goto done;
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: a handful of members */
        struct sc_member t = m[i];
        size_t j = i;
        while (j > 0) {
            if (key_cmp(m[j - 1].key, m[j - 1].len, t.key, t.len) <= 0)
                break;
            m[j] = m[j - 1];
            j--;
        }
        if (j != i)
            sorted = 0;
        m[j] = t;
    }
    if (sorted) { /* already in key order: written as they are */
        sp_buf_addc(s->out, '}');
        rc = 0;
        goto done;
    }
    if (s->out->len - open > sizeof(small_copy) &&
        (copy = malloc(s->out->len - open)) == NULL)
        goto done;
    from = copy != NULL ? copy : small_copy;
    memcpy(from, s->out->data + open, s->out->len - open);
    s->out->len = open;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sp_buf_addc(s->out, ',');
        sp_buf_add(s->out, from + (m[i].from - open), m[i].to - m[i].from);
    }
    sp_buf_addc(s->out, '}');
    rc = 0;
done:
    free(copy);
    if (m != small)
        free(m);
    return rc;
}

static int sc_value(struct scale *s, int scaled, int depth)
{
    const char *str;
    size_t len;

    if (depth > SP_JSON_MAX_DEPTH)
        return -1;
    sc_ws(s);
    if (s->p >= s->e)
        return -1;
    switch (*s->p) {
    case '"': /* no escapes, no control bytes: what sp_json_add_string writes, quotes and all */
        if (sc_string(s, &str, &len) != 0)
            return -1;
        sp_buf_add(s->out, str - 1, len + 2);
        return 0;
    case '{':
        s->p++;
        sc_ws(s);
        if (s->p < s->e && *s->p == '}') {
            s->p++;
            sp_buf_add(s->out, "{}", 2);
            return 0;
        }
        return sc_object(s, depth);
    case '[':
        s->p++;
        sp_buf_addc(s->out, '[');
        sc_ws(s);
        if (s->p < s->e && *s->p == ']') {
            s->p++;
            sp_buf_addc(s->out, ']');
            return 0;
        }
        for (;;) {
            if (sc_value(s, 0, depth + 1) != 0)
                return -1;
            sc_ws(s);
            if (s->p < s->e && *s->p == ',') {
                s->p++;
                sp_buf_addc(s->out, ',');
                continue;
            }
            if (s->p < s->e && *s->p == ']') {
                s->p++;
                sp_buf_addc(s->out, ']');
                return 0;
            }
            return -1;
        }
    case 't':
    case 'f':
    case 'n':
        len = *s->p == 'f' ? 5 : 4;
        if ((size_t)(s->e - s->p) < len ||
            memcmp(s->p, *s->p == 't' ? "true" : *s->p == 'f' ? "false" : "null", len) != 0)
            return -1;
        sp_buf_add(s->out, s->p, len);
        s->p += len;
        return 0;
    default: return sc_number(s, scaled);
    }
}

int sp_json_scale(const char *text, size_t len, const char *keys, size_t keys_len,
                  double factor, struct sp_buf *out)
{
    struct scale s = {text, text + len, keys, keys_len, factor, out};
    size_t mark = out->len;

    if (sc_value(&s, 0, 0) != 0) {
        out->len = mark;
        return -1;
    }
    sc_ws(&s);
    if (s.p != s.e) {
        out->len = mark;
        return -1;
    }
    return 0;
}
