/* lua_spacer.c: the C half of the `spacer` module that never waits: json, log, time, crypto,
 * and raising HTTP errors from C. */
#include "lua_spacer.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "gen.h"
#include "json.h"
#include "log.h"
#include "lua_http.h"
#include "req.h"
#include "timer.h"

int sp_lua_http_error(lua_State *L, int status, const char *code, const char *message)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (status == 503) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "1");
        lua_setfield(L, -2, "Retry-After");
        lua_setfield(L, -2, "headers");
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &sp_lua_error_mt_key);
    lua_setmetatable(L, -2);
    return lua_error(L);
}

/* ---- json ------------------------------------------------------------------- */

static int l_json_encode(lua_State *L)
{
    struct sp_buf b = {0};
    sp_err err;

    luaL_checkany(L, 1);
    if (sp_json_encode(L, 1, &b, SP_JSON_MAX_DEPTH, &err) != 0) {
        sp_buf_free(&b);
        return luaL_error(L, "%s", err.msg);
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    sp_buf_free(&b);
    return 1;
}

/* spacer.json.decode(s) -> value | nil, err */
static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    sp_err err;

    if (sp_json_decode(L, s, len, SP_JSON_MAX_DEPTH, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    return 1;
}

/* spacer.json.raw(s) -> a value the encoder writes as s itself; s must be valid JSON */
static int l_json_raw(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    sp_err err;

    if (sp_json_decode(L, s, len, SP_JSON_MAX_DEPTH, &err) != 0)
        return luaL_error(L, "spacer.json.raw: %s", err.msg);
    lua_pop(L, 1);
    sp_json_push_raw(L, s, len);
    return 1;
}

static int l_json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    sp_json_mark_array(L, 1);
    lua_settop(L, 1);
    return 1;
}

static int l_json_is_array(lua_State *L)
{
    int yes = 0;

    if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
        sp_json_new_array(L, 0);
        lua_getmetatable(L, -1);
        yes = lua_rawequal(L, -1, -3);
    }
    lua_pushboolean(L, yes);
    return 1;
}

/* The decoded value at idx with the scaled integers divided (sp_json_scale's rule), in
 * place: the way for the texts the fast path leaves. */
static void scale_table(lua_State *L, int idx, const char *keys, size_t keys_len, double factor,
                        int depth)
{
    idx = lua_absindex(L, idx);
    if (depth > SP_JSON_MAX_DEPTH || !lua_checkstack(L, 4))
        return;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* Stack: k, v */
        if (lua_istable(L, -1)) {
            scale_table(L, -1, keys, keys_len, factor, depth + 1);
        } else if (lua_isinteger(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len);
            for (const char *p = keys; p + len + 2 <= keys + keys_len; p++)
                if (*p == ',' && p[len + 1] == ',' && memcmp(p + 1, k, len) == 0) {
                    lua_Number v = (lua_Number)lua_tointeger(L, -1) / factor;
                    lua_pushvalue(L, -2);
                    lua_pushnumber(L, v);
                    lua_rawset(L, idx); /* an existing key: lua_next goes on */
                    break;
                }
        }
        lua_pop(L, 1);
    }
}

/* The function spacer.json.scaler answers: f(text, factor) -> raw JSON (see below). */
int sp_lua_json_scale(lua_State *L)
{
    size_t len, keys_len;
    const char *text = luaL_checklstring(L, 1, &len);
    double factor;

    if (lua_isnoneornil(L, 2)) { /* "100 {...}": one column of a select list */
        const char *space = memchr(text, ' ', len);
        char *end;
        factor = space ? strtod(text, &end) : 0;
        if (space == NULL || end != space || end == text)
            return luaL_error(L, "spacer.json.scaler: expected \"factor text\"");
        len -= (size_t)(space + 1 - text);
        text = space + 1;
    } else {
        factor = (double)luaL_checknumber(L, 2);
    }
    const char *keys = lua_tolstring(L, lua_upvalueindex(1), &keys_len);
    struct sp_buf b = {0};
    sp_err err;

    if (factor == 0 || factor != factor)
        return luaL_error(L, "spacer.json.scaler: the factor must be a number other than 0");
    if (sp_json_scale(text, len, keys, keys_len, factor, &b) != 0) {
        sp_buf_free(&b); /* what the fast path began: no longjmp may strand it */
        if (sp_json_decode(L, text, len, SP_JSON_MAX_DEPTH, &err) != 0)
            return luaL_error(L, "spacer.json.scaler: %s", err.msg);
        if (lua_istable(L, -1))
            scale_table(L, -1, keys, keys_len, factor, 0);
        b.len = 0;
        if (sp_json_encode(L, -1, &b, SP_JSON_MAX_DEPTH, &err) != 0) {
            sp_buf_free(&b);
            return luaL_error(L, "spacer.json.scaler: %s", err.msg);
        }
    }
    sp_json_push_raw(L, b.data, b.len);
    sp_buf_free(&b);
    return 1;
}

/* spacer.json.scaler({"amount", "total"}) -> f(text, factor): the JSON text as a raw JSON
 * value (compact, members in key order, as the encoder writes them) with every integer under one of the keys, at any depth,
 * divided by factor: minor units to major ones, 50050 -> 500.5. f("100 {...}"), factor and
 * text in one string, is the form of a select list's column: spacer.db.json_with runs it as
 * that column's shaper without a Lua call. */
static int l_json_scaler(lua_State *L)
{
    luaL_Buffer keys;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_buffinit(L, &keys);
    luaL_addchar(&keys, ',');
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 1); i++) {
        size_t len;
        lua_rawgeti(L, 1, i);
        const char *k = lua_tolstring(L, -1, &len);
        if (k == NULL || len == 0 || memchr(k, ',', len) != NULL)
            return luaL_error(L, "spacer.json.scaler: keys must be names without commas");
        lua_pop(L, 1);
        luaL_addlstring(&keys, k, len);
        luaL_addchar(&keys, ',');
    }
    luaL_pushresult(&keys);
    lua_pushcclosure(L, sp_lua_json_scale, 1);
    return 1;
}

int sp_lua_json_object(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE)
        lua_settop(L, 1);
    else
        lua_newtable(L);
    return 1;
}

void sp_lua_open_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode", l_json_encode},
        {"decode", l_json_decode},
        {"array", l_json_array},
        {"is_array", l_json_is_array},
        {"raw", l_json_raw},
        {"scaler", l_json_scaler},
        {"object", sp_lua_json_object},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    sp_json_push_null(L);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
}

/* ---- log -------------------------------------------------------------------- */

static int log_at(lua_State *L, enum sp_log_level level)
{
    struct sp_req *req = sp_gen_req(L);
    size_t len;
    const char *msg = luaL_checklstring(L, 1, &len);
    lua_Debug ar;
    char fields[512];
    size_t n = 0;

    if (!sp_log_enabled(level))
        return 0;
    fields[0] = '\0';
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        n += (size_t)snprintf(fields, sizeof(fields), "\"at\":\"%s:%d\"",
                              ar.source[0] == '@' ? ar.source + 1 : "?", ar.currentline);
    if (req != NULL && n < sizeof(fields) - 100)
        snprintf(fields + n, sizeof(fields) - n, "%s\"request_id\":\"%s\"", n ? "," : "",
                 req->id);
    sp_log_text(level, fields, msg, len); /* a NUL is written as \u0000, not a cut */
    return 0;
}

static int l_log_debug(lua_State *L)
{
    return log_at(L, SP_LOG_DEBUG);
}

static int l_log_info(lua_State *L)
{
    return log_at(L, SP_LOG_INFO);
}

static int l_log_warn(lua_State *L)
{
    return log_at(L, SP_LOG_WARN);
}

static int l_log_error(lua_State *L)
{
    return log_at(L, SP_LOG_ERROR);
}

void sp_lua_open_log(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"debug", l_log_debug}, {"info", l_log_info},   {"warn", l_log_warn},
        {"error", l_log_error}, {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "log");
}

/* ---- time ------------------------------------------------------------------- */

/* The process's TZ is switched to the zone asked for; workers are single-threaded and the
 * hashing threads never look at local time. */
/* The UTC offsets of the current zone, by quarter hour: glibc works out a time past the zone
 * file's last transition from its TZ rule on every call (a booking list formats two times a
 * row). A quarter hour is kept only when it starts and ends with the same offset; 1,024 of
 * them (24 kB) hold a few pages of bookings without evicting one another. */
#define ZONE_MEMO     1024
#define ZONE_QUARTER  900
static struct {
    int64_t quarter; /* t / ZONE_QUARTER, rounded down */
    long off;
    int valid;
} zone_memo[ZONE_MEMO];

static long zone_offset_at(time_t t)
{
    struct tm tm;

    localtime_r(&t, &tm);
    return tm.tm_gmtoff;
}

/* The current zone's offset at t. */
static long zone_offset(int64_t t)
{
    int64_t q = t >= 0 ? t / ZONE_QUARTER : -((-t + ZONE_QUARTER - 1) / ZONE_QUARTER);
    unsigned slot = (unsigned)((uint64_t)q % ZONE_MEMO);
    long off;

    if (zone_memo[slot].valid && zone_memo[slot].quarter == q)
        return zone_memo[slot].off;
    off = zone_offset_at((time_t)t);
    if (zone_offset_at((time_t)(q * ZONE_QUARTER)) == off &&
        zone_offset_at((time_t)(q * ZONE_QUARTER + ZONE_QUARTER - 1)) == off) {
        zone_memo[slot].quarter = q;
        zone_memo[slot].off = off;
        zone_memo[slot].valid = 1;
    }
    return off;
}

/* Proleptic Gregorian date of a day count from 1970-01-01 (H. Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* t shifted by off as a broken-down time (what localtime_r() gives for those fields). */
static void tm_of(int64_t t, long off, struct tm *tm)
{
    int64_t local = t + off, days, secs;
    int y, m, d;

    days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    secs = local - days * 86400;
    civil_from_days(days, &y, &m, &d);
    memset(tm, 0, sizeof(*tm));
    tm->tm_year = y - 1900;
    tm->tm_mon = m - 1;
    tm->tm_mday = d;
    tm->tm_hour = (int)(secs / 3600);
    tm->tm_min = (int)(secs % 3600 / 60);
    tm->tm_sec = (int)(secs % 60);
    tm->tm_gmtoff = off;
}

static int use_zone(const char *tz, sp_err *err)
{
    static char current[128];
    char path[256];

    if (strcmp(current, tz) == 0)
        return 0;
    if (tz[0] == '\0' || strlen(tz) >= sizeof(current) || strstr(tz, "..") || tz[0] == '/' ||
        !(isalpha((unsigned char)tz[0]))) {
        sp_err_set(err, "unknown time zone \"%s\"", tz);
        return -1;
    }
    if (strcmp(tz, "UTC") != 0) {
        snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
        if (access(path, R_OK) != 0) {
            sp_err_set(err, "unknown time zone \"%s\"", tz);
            return -1;
        }
    }
    setenv("TZ", tz, 1);
    tzset();
    snprintf(current, sizeof(current), "%s", tz);
    memset(zone_memo, 0, sizeof(zone_memo));
    return 0;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int mo)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return mo == 2 && leap_year(y) ? 29 : days[mo - 1];
}

/* The instants that can be written in RFC 3339 form: 0000-01-01T00:00:00Z to
 * 9999-12-31T23:59:59Z. */
#define SP_TIME_MIN (-62167219200LL)
#define SP_TIME_MAX 253402300799LL

int sp_time_parse(const char *s, const char *tz, int64_t *out, sp_err *err)
{
    struct tm tm = {0};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, has_off = 0, off = 0;
    int64_t t;

    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        goto bad;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            goto bad;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                goto bad;
            if (*p == '.' || *p == ',') /* fractions of a second are dropped */
                for (p++; isdigit((unsigned char)*p); p++)
                    ;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        has_off = 1;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
        if (digits(&p, 2, &oh))
            goto bad;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &om))
                goto bad;
        } else if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) {
            goto bad;
        }
        if (oh > 18 || om > 59)
            goto bad;
        has_off = 1;
        off = sign * (oh * 3600 + om * 60);
    }
    /* The calendar is checked before anything is normalised: 2026-02-30 is no date whatever
     * the time of day. */
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 60)
        goto bad;
    /* A leap second (:60) is the instant one second after :59, that is the next minute's :00,
     * as PostgreSQL reads it; both paths below agree because both add it after the fact. */
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec == 60 ? 59 : sec;
    if (has_off) {
        t = (int64_t)timegm(&tm) - off;
    } else {
        if (use_zone(tz, err) != 0)
            return -1;
        tm.tm_isdst = -1;
        time_t lt = mktime(&tm);
        if (lt == (time_t)-1 && !(y == 1969 || y == 1970))
            goto bad;
        if (tm.tm_mday != d) /* a day the zone skipped (Pacific/Apia, 2011-12-30) */
            goto bad;
        t = (int64_t)lt;
    }
    t += sec == 60;
    if (t < SP_TIME_MIN || t > SP_TIME_MAX)
        goto bad;
    *out = t;
    return 0;
bad:
    sp_err_set(err, "not an ISO 8601 date and time: \"%s\"", s);
    return -1;
}

int sp_time_format(int64_t t, const char *tz, char *buf, size_t cap, sp_err *err)
{
    struct tm tm;
    time_t tt = (time_t)t;
    long off;

    if (t < SP_TIME_MIN || t > SP_TIME_MAX) {
        sp_err_set(err, "time %lld is outside the years 0000 to 9999", (long long)t);
        return -1;
    }
    if (use_zone(tz, err) != 0)
        return -1;
    off = zone_offset(t);
    tm_of(t, off, &tm);
    /* RFC 3339 offsets have no seconds (local mean time before a zone adopted standard time,
     * Europe/Berlin before 1893 was +00:53:28) and years have four digits: such an instant is
     * written in UTC instead, so every formatted time parses back to the same instant. */
    if (off % 60 != 0 || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        gmtime_r(&tt, &tm);
        off = 0;
    }
    if (tm.tm_year >= 1000 - 1900 && cap >= 26) {
        /* What the snprintf below writes, digit by digit (booking lists format two times a
         * row). */
        int y = tm.tm_year + 1900;
        long a = labs(off);
        int f[] = {tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(a / 3600), (int)(a % 3600 / 60)};
        static const char sep[] = "--T::\0:";
        char *p = buf;
        *p++ = (char)('0' + y / 1000), *p++ = (char)('0' + y / 100 % 10);
        *p++ = (char)('0' + y / 10 % 10), *p++ = (char)('0' + y % 10);
        for (int i = 0; i < 7; i++) {
            *p++ = i == 5 ? (off < 0 ? '-' : '+') : sep[i];
            *p++ = (char)('0' + f[i] / 10 % 10), *p++ = (char)('0' + f[i] % 10);
        }
        *p = '\0';
        return 0;
    }
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
             labs(off) / 3600, (labs(off) % 3600) / 60);
    return 0;
}

/* spacer.time.parse(s, tz) -> epoch | nil, err */
static int l_time_parse(lua_State *L)
{
    size_t slen, tzlen = 3;
    const char *s = luaL_checklstring(L, 1, &slen), *tz = "UTC";
    int64_t t;
    sp_err err;

    if (!lua_isnoneornil(L, 2))
        tz = luaL_checklstring(L, 2, &tzlen);
    if (memchr(s, '\0', slen) != NULL || memchr(tz, '\0', tzlen) != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, "contains a NUL byte");
        return 2;
    }
    if (sp_time_parse(s, tz, &t, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)t);
    return 1;
}

/* spacer.time.format(epoch, tz) -> "2026-12-01T10:00:00+03:00" */
int sp_lua_time_format(lua_State *L)
{
    char buf[64];
    sp_err err;

    if (sp_time_format((int64_t)luaL_checkinteger(L, 1), sp_lua_opttext(L, 2, "UTC"), buf,
                       sizeof(buf), &err) != 0)
        return luaL_error(L, "%s", err.msg);
    lua_pushstring(L, buf);
    return 1;
}

/* spacer.time.fields(epoch, tz) -> {year, month, day, hour, min, sec, wday (1 = Monday), offset} */
static int l_time_fields(lua_State *L)
{
    time_t t = (time_t)luaL_checkinteger(L, 1);
    struct tm tm;
    sp_err err;

    if (use_zone(sp_lua_opttext(L, 2, "UTC"), &err) != 0)
        return luaL_error(L, "%s", err.msg);
    localtime_r(&t, &tm);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, tm.tm_year + 1900);
    lua_setfield(L, -2, "year");
    lua_pushinteger(L, tm.tm_mon + 1);
    lua_setfield(L, -2, "month");
    lua_pushinteger(L, tm.tm_mday);
    lua_setfield(L, -2, "day");
    lua_pushinteger(L, tm.tm_hour);
    lua_setfield(L, -2, "hour");
    lua_pushinteger(L, tm.tm_min);
    lua_setfield(L, -2, "min");
    lua_pushinteger(L, tm.tm_sec);
    lua_setfield(L, -2, "sec");
    lua_pushinteger(L, tm.tm_wday == 0 ? 7 : tm.tm_wday);
    lua_setfield(L, -2, "wday");
    lua_pushinteger(L, tm.tm_gmtoff);
    lua_setfield(L, -2, "offset");
    return 1;
}

static int l_time_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)time(NULL));
    return 1;
}

static int l_time_valid_zone(lua_State *L)
{
    sp_err err;

    size_t len;
    const char *tz = luaL_checklstring(L, 1, &len);

    lua_pushboolean(L, memchr(tz, '\0', len) == NULL && use_zone(tz, &err) == 0);
    return 1;
}

void sp_lua_open_time(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"parse", l_time_parse}, {"format", sp_lua_time_format},         {"fields", l_time_fields},
        {"now", l_time_now},     {"valid_zone", l_time_valid_zone}, {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "time");
}

/* ---- crypto ----------------------------------------------------------------- */

static void push_hex(lua_State *L, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char buf[256];

    for (size_t i = 0; i < n && i < sizeof(buf) / 2; i++) {
        buf[2 * i] = hex[p[i] >> 4];
        buf[2 * i + 1] = hex[p[i] & 15];
    }
    lua_pushlstring(L, buf, n * 2);
}

static int l_crypto_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[32];
    unsigned int mdlen = 0;

    EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL);
    push_hex(L, md, mdlen);
    return 1;
}

static int l_crypto_hmac_sha256(lua_State *L)
{
    size_t klen, mlen;
    const char *k = luaL_checklstring(L, 1, &klen), *m = luaL_checklstring(L, 2, &mlen);
    unsigned char md[32];
    unsigned int mdlen = 0;

    HMAC(EVP_sha256(), k, (int)klen, (const unsigned char *)m, mlen, md, &mdlen);
    if (lua_toboolean(L, 3)) {
        lua_pushlstring(L, (const char *)md, mdlen); /* raw bytes */
        return 1;
    }
    push_hex(L, md, mdlen);
    return 1;
}

static int l_crypto_random_hex(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 16);
    unsigned char buf[128];

    luaL_argcheck(L, n > 0 && n <= 128, 1, "1 to 128 bytes");
    if (RAND_bytes(buf, (int)n) != 1)
        return luaL_error(L, "no randomness available");
    push_hex(L, buf, (size_t)n);
    return 1;
}

static int l_crypto_equal(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la), *b = luaL_checklstring(L, 2, &lb);

    lua_pushboolean(L, la == lb && CRYPTO_memcmp(a, b, la) == 0);
    return 1;
}

static int l_crypto_base64_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);

    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* spacer.crypto.base64_decode(s) -> bytes | nil, err  [-1, +1|2, m] */
static int l_crypto_base64_decode(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, 3 * (len / 4) + 2);
    sp_err err;

    if (sp_base64_decode(s, len, out, &n, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

/* spacer.crypto.hex_decode(s) -> bytes | nil, err  [-1, +1|2, m] */
static int l_crypto_hex_decode(lua_State *L)
{
    size_t len, n;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len / 2 + 1);
    sp_err err;

    if (sp_hex_decode(s, len, out, &n, &err) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, err.msg);
        return 2;
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

void sp_lua_open_crypto(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"sha256", l_crypto_sha256},
        {"hmac_sha256", l_crypto_hmac_sha256},
        {"random_hex", l_crypto_random_hex},
        {"equal", l_crypto_equal},
        {"base64_encode", l_crypto_base64_encode},
        {"base64_decode", l_crypto_base64_decode},
        {"hex_decode", l_crypto_hex_decode},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_setfield(L, -2, "crypto");
}

void (*const sp_lua_openers[])(lua_State *L) = {
    sp_lua_open_json, sp_lua_open_log, sp_lua_open_time, sp_lua_open_crypto,
    sp_lua_open_auth, sp_lua_open_db,  sp_lua_open_ops,  sp_lua_open_http,
    sp_lua_open_timer, sp_lua_open_files, sp_lua_open_cache, NULL,
};
