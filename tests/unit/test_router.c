/* test_router.c: core/router.c: pattern compilation, matching with integer and string
 * parameters, precedence, 404/405 and Allow, conflicts, malformed patterns, many routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

/* ---- fixture and helpers ------------------------------------------------- */

static int setup(void **state)
{
    *state = sp_router_new();
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    sp_router_free(*state);
    return 0;
}

static struct sp_route *add(struct sp_router *r, const char *method, const char *pattern)
{
    struct sp_route *rt = NULL;
    sp_err err = {{0}};
    char source[300];

    snprintf(source, sizeof(source), "routes/test.lua:%d", sp_router_count(r) + 1);
    if (sp_router_add(r, method, pattern, source, &rt, &err) != 0)
        fail_msg("adding %s %s failed: %s", method, pattern, err.msg);
    assert_non_null(rt);
    return rt;
}

/* Asserts method+path matches route want; returns the match for parameter checks. */
static struct sp_match
must_match(struct sp_router *r, const char *method, const char *path, const struct sp_route *want)
{
    struct sp_match m;

    memset(&m, 0xa5, sizeof(m)); /* no stale fields may pass for results */
    enum sp_match_result res = sp_router_match(r, method, path, &m);
    if (res != SP_MATCH_OK)
        fail_msg("%s %s: result %d, expected a match of %s", method, path, (int)res, want->pattern);
    if (m.route == NULL)
        fail_msg("%s %s: a match without a route", method, path);
    if (m.route != want)
        fail_msg("%s %s matched %s %s, expected %s %s", method, path, m.route->method,
                 m.route->pattern, want->method, want->pattern);
    return m;
}

static void must_404(struct sp_router *r, const char *method, const char *path)
{
    struct sp_match m;
    enum sp_match_result res = sp_router_match(r, method, path, &m);

    if (res != SP_MATCH_NOT_FOUND)
        fail_msg("%s %s: result %d (%s), expected 404", method, path, (int)res,
                 res == SP_MATCH_OK ? m.route->pattern : m.allow);
    assert_null(m.route);
}

static void must_405(struct sp_router *r, const char *method, const char *path, const char *allow)
{
    struct sp_match m;
    enum sp_match_result res = sp_router_match(r, method, path, &m);

    if (res != SP_MATCH_BAD_METHOD)
        fail_msg("%s %s: result %d, expected 405", method, path, (int)res);
    assert_null(m.route);
    assert_string_equal(m.allow, allow);
}

static void param_is(const struct sp_match *m, int i, const char *name, const char *value)
{
    assert_true(i < m->nparams);
    assert_string_equal(m->params[i].name, name);
    assert_int_equal(m->params[i].len, strlen(value));
    assert_memory_equal(m->params[i].value, value, strlen(value));
}

/* Asserts the pattern is rejected with an error containing what, leaving the table as is. */
static void bad_pattern(struct sp_router *r, const char *pattern, const char *what)
{
    struct sp_route *rt = NULL;
    sp_err err = {{0}};
    int before = sp_router_count(r);

    if (sp_router_add(r, "GET", pattern, "bad.lua:1", &rt, &err) == 0)
        fail_msg("pattern \"%s\" was accepted", pattern);
    assert_null(rt);
    assert_int_equal(sp_router_count(r), before);
    if (strstr(err.msg, what) == NULL)
        fail_msg("\"%s\": error \"%s\" does not mention \"%s\"", pattern, err.msg, what);
}

/* ---- matching ------------------------------------------------------------ */

static void test_static_match(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *health = add(r, "GET", "/api/health");
    struct sp_route *spaces = add(r, "GET", "/api/spaces/spaces");

    struct sp_match m = must_match(r, "GET", "/api/health", health);
    assert_int_equal(m.nparams, 0);
    m = must_match(r, "GET", "/api/spaces/spaces", spaces);
    assert_int_equal(m.nparams, 0);
    must_404(r, "GET", "/api");
    must_404(r, "GET", "/api/");
    must_404(r, "GET", "/api/health/x");
    must_404(r, "GET", "/api/healthz");
    must_404(r, "GET", "/api/healt");
    must_404(r, "GET", "/API/health"); /* paths are case-sensitive */
    must_404(r, "GET", "/api//health");
    must_404(r, "GET", "api/health");
    must_404(r, "GET", "");
    must_404(r, "GET", "/");
    must_404(r, "GET", "/api/spaces");

    /* the route keeps what it was declared with */
    assert_string_equal(health->method, "GET");
    assert_string_equal(health->pattern, "/api/health");
    assert_string_equal(health->source, "routes/test.lua:1");
    assert_int_equal(health->ref, -1);
    assert_int_equal(health->auth, 0);
    assert_null(health->roles);
    assert_int_equal(sp_router_count(r), 2);
    assert_ptr_equal(sp_router_at(r, 0), health);
    assert_ptr_equal(sp_router_at(r, 1), spaces);
}

/* Routes that share the first segment, or the first two, each keep their own paths: the
 * second segment that skips a route is only ever a static one. */
static void test_second_segment(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *profile = add(r, "GET", "/api/users/profile");
    struct sp_route *user = add(r, "GET", "/api/users/{id}");
    struct sp_route *any = add(r, "GET", "/api/{kind:str}/profile");
    struct sp_route *spaces = add(r, "GET", "/api/spaces/profile");
    struct sp_route *update = add(r, "PATCH", "/api/users/profile");

    struct sp_match m = must_match(r, "GET", "/api/users/profile", profile);
    assert_int_equal(m.nparams, 0);
    m = must_match(r, "GET", "/api/users/7", user);
    param_is(&m, 0, "id", "7");
    m = must_match(r, "GET", "/api/spaces/profile", spaces);
    m = must_match(r, "GET", "/api/rooms/profile/", any);
    param_is(&m, 0, "kind", "rooms");
    must_match(r, "PATCH", "/api/users/profile", update);
    must_405(r, "PATCH", "/api/spaces/profile", "GET");
    must_405(r, "DELETE", "/api/users/profile", "GET, PATCH");
    must_404(r, "GET", "/api/users/x");
    must_404(r, "GET", "/api/user/7");
    must_404(r, "GET", "/api/rooms/profiles");
}

static void test_int_param(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *one = add(r, "GET", "/api/spaces/{id}");
    const char *path = "/api/spaces/42";

    struct sp_match m = must_match(r, "GET", path, one);
    assert_int_equal(m.nparams, 1);
    param_is(&m, 0, "id", "42");
    assert_true(m.params[0].is_int);
    assert_int_equal(m.params[0].ival, 42);
    assert_ptr_equal(m.params[0].value, path + 12); /* points into the path */

    m = must_match(r, "GET", "/api/spaces/1", one);
    assert_int_equal(m.params[0].ival, 1);
    m = must_match(r, "GET", "/api/spaces/999999999999999999", one); /* 18 digits */
    assert_true(m.params[0].is_int);
    assert_int_equal(m.params[0].ival, 999999999999999999LL);
    m = must_match(r, "GET", "/api/spaces/100000000000000000", one);
    assert_int_equal(m.params[0].ival, 100000000000000000LL);

    static const char *not_ids[] = {
        "/api/spaces/0",
        "/api/spaces/01",
        "/api/spaces/007",
        "/api/spaces/-1",
        "/api/spaces/+1",
        "/api/spaces/abc",
        "/api/spaces/1a",
        "/api/spaces/a1",
        "/api/spaces/1.5",
        "/api/spaces/1e3",
        "/api/spaces/%31",
        "/api/spaces/ 1",
        "/api/spaces/1000000000000000000",  /* 19 digits */
        "/api/spaces/9223372036854775807",  /* INT64_MAX: 19 digits as well */
        "/api/spaces/9223372036854775808",  /* would overflow */
        "/api/spaces/99999999999999999999", /* 20 digits */
        "/api/spaces/",
        "/api/spaces/42/x",
    };
    for (size_t i = 0; i < SP_ARRAY_LEN(not_ids); i++)
        must_404(r, "GET", not_ids[i]);
}

static void test_several_params(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *rt = add(r, "GET", "/api/spaces/{space_id}/bookings/{booking_id}");
    struct sp_route *s = add(r, "GET", "/files/{owner:str}/{name:str}");

    struct sp_match m = must_match(r, "GET", "/api/spaces/7/bookings/123456", rt);
    assert_int_equal(m.nparams, 2);
    param_is(&m, 0, "space_id", "7");
    param_is(&m, 1, "booking_id", "123456");
    assert_int_equal(m.params[0].ival, 7);
    assert_int_equal(m.params[1].ival, 123456);
    must_404(r, "GET", "/api/spaces/7/bookings/x");
    must_404(r, "GET", "/api/spaces/x/bookings/7");
    must_404(r, "GET", "/api/spaces/7/booking/7");

    m = must_match(r, "GET", "/files/ana/report.pdf", s);
    assert_int_equal(m.nparams, 2);
    param_is(&m, 0, "owner", "ana");
    param_is(&m, 1, "name", "report.pdf");
    assert_false(m.params[1].is_int);

    /* the most parameters a pattern may have */
    struct sp_route *eight = add(r, "GET", "/m/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}");
    m = must_match(r, "GET", "/m/1/2/3/4/5/6/7/8", eight);
    assert_int_equal(m.nparams, SP_ROUTE_MAX_PARAMS);
    for (int i = 0; i < SP_ROUTE_MAX_PARAMS; i++) {
        char name[2] = {(char)('a' + i), '\0'};
        assert_string_equal(m.params[i].name, name);
        assert_int_equal(m.params[i].ival, i + 1);
    }
}

static void test_str_param(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *slug = add(r, "GET", "/api/tags/{slug:str}");
    const char *path = "/api/tags/quiet-rooms";

    struct sp_match m = must_match(r, "GET", path, slug);
    assert_int_equal(m.nparams, 1);
    param_is(&m, 0, "slug", "quiet-rooms");
    assert_false(m.params[0].is_int);
    assert_int_equal(m.params[0].ival, 0);
    assert_ptr_equal(m.params[0].value, path + 10);

    /* any one non-empty segment, digits included, never a number */
    m = must_match(r, "GET", "/api/tags/123", slug);
    param_is(&m, 0, "slug", "123");
    assert_false(m.params[0].is_int);
    m = must_match(r, "GET", "/api/tags/0", slug);
    param_is(&m, 0, "slug", "0");
    m = must_match(r, "GET", "/api/tags/caf%C3%A9.x", slug);
    param_is(&m, 0, "slug", "caf%C3%A9.x");
    m = must_match(r, "GET", "/api/tags/a/", slug); /* trailing slash not in the value */
    param_is(&m, 0, "slug", "a");
    must_404(r, "GET", "/api/tags/");
    must_404(r, "GET", "/api/tags");
    must_404(r, "GET", "/api/tags/a/b");
    must_404(r, "GET", "/api/tags//");
}

static void test_static_beats_param(void **state)
{
    struct sp_router *r = *state;
    /* declared param first, then static ... */
    struct sp_route *byid = add(r, "GET", "/api/spaces/{id}");
    struct sp_route *mine = add(r, "GET", "/api/spaces/mine");
    /* ... and static first, then param */
    struct sp_route *me = add(r, "GET", "/api/users/me");
    struct sp_route *user = add(r, "GET", "/api/users/{name:str}");

    must_match(r, "GET", "/api/spaces/mine", mine);
    struct sp_match m = must_match(r, "GET", "/api/spaces/5", byid);
    assert_int_equal(m.params[0].ival, 5);
    must_404(r, "GET", "/api/spaces/minE");
    m = must_match(r, "GET", "/api/users/me", me);
    assert_int_equal(m.nparams, 0);
    m = must_match(r, "GET", "/api/users/mee", user);
    param_is(&m, 0, "name", "mee");
    must_match(r, "GET", "/api/users/m", user);

    /* an earlier static segment wins over a later one */
    struct sp_route *a = add(r, "GET", "/x/{p:str}/c");
    struct sp_route *b = add(r, "GET", "/x/b/{q:str}");
    m = must_match(r, "GET", "/x/b/c", b);
    param_is(&m, 0, "q", "c");
    m = must_match(r, "GET", "/x/z/c", a);
    param_is(&m, 0, "p", "z");
    m = must_match(r, "GET", "/x/b/d", b);
    param_is(&m, 0, "q", "d");
    struct sp_route *all = add(r, "GET", "/x/b/c");
    must_match(r, "GET", "/x/b/c", all);

    /* an all-static route declared first ends the search; another method's still says 405 */
    struct sp_route *fixed = add(r, "GET", "/y/z/fixed");
    add(r, "GET", "/y/z/{w:str}");
    add(r, "POST", "/y/z/fixed");
    must_match(r, "GET", "/y/z/fixed", fixed);
    must_405(r, "PUT", "/y/z/fixed", "GET, POST");
    /* same lengths, other text: the segments' hashes only filter, the text decides */
    must_404(r, "GET", "/y/q/fixed");
    must_404(r, "GET", "/q/z/fixed");
}

static void test_trailing_slash(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *list = add(r, "GET", "/api/spaces");
    struct sp_route *one = add(r, "GET", "/api/spaces/{id}");

    must_match(r, "GET", "/api/spaces/", list);
    struct sp_match m = must_match(r, "GET", "/api/spaces/42/", one);
    param_is(&m, 0, "id", "42");
    assert_int_equal(m.params[0].ival, 42);
    must_404(r, "GET", "/api/spaces//");
    must_404(r, "GET", "/api/spaces/42//");
}

static void test_root_route(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *root = add(r, "GET", "/");
    struct sp_route *health = add(r, "GET", "/health");

    struct sp_match m = must_match(r, "GET", "/", root);
    assert_int_equal(m.nparams, 0);
    must_match(r, "GET", "/health", health);
    must_match(r, "HEAD", "/", root);
    must_404(r, "GET", "");
    must_404(r, "GET", "//");
    must_404(r, "GET", "/x");
    must_405(r, "POST", "/", "GET");
    struct sp_route *post = add(r, "POST", "/");
    must_match(r, "POST", "/", post);
}

static void test_method_not_allowed(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *get = add(r, "GET", "/api/spaces");
    struct sp_route *post = add(r, "POST", "/api/spaces");
    struct sp_route *patch = add(r, "PATCH", "/api/spaces/{id}");
    struct sp_route *del = add(r, "DELETE", "/api/spaces/{id}");

    must_match(r, "GET", "/api/spaces", get);
    must_match(r, "POST", "/api/spaces", post);
    must_match(r, "PATCH", "/api/spaces/3", patch);
    must_match(r, "DELETE", "/api/spaces/3", del);
    must_405(r, "DELETE", "/api/spaces", "GET, POST");
    must_405(r, "PUT", "/api/spaces/", "GET, POST");
    must_405(r, "GET", "/api/spaces/3", "PATCH, DELETE");
    must_404(r, "GET", "/api/spaces/abc"); /* the {id} routes do not know this path */
    must_404(r, "DELETE", "/api/other");

    /* a path several routes match lists each method once */
    add(r, "GET", "/s/mine");
    add(r, "GET", "/s/{slug:str}");
    add(r, "POST", "/s/{slug:str}");
    add(r, "POST", "/s/mine");
    must_405(r, "DELETE", "/s/mine", "GET, POST");
    must_405(r, "PUT", "/s/other", "GET, POST");
}

static void test_head_matches_get(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *get = add(r, "GET", "/api/spaces/{id}");
    struct sp_route *post = add(r, "POST", "/api/upload");

    struct sp_match m = must_match(r, "HEAD", "/api/spaces/9", get);
    assert_int_equal(m.params[0].ival, 9);
    must_405(r, "HEAD", "/api/upload", "POST");
    must_match(r, "POST", "/api/upload", post);
    must_404(r, "HEAD", "/api/nothing");
    /* GET does not match HEAD routes the other way round */
    struct sp_route *head = add(r, "HEAD", "/only-head");
    must_405(r, "GET", "/only-head", "HEAD");
    SP_UNUSED(head);
}

/* ---- the table ----------------------------------------------------------- */

static void test_conflicts(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *rt = NULL, *first;
    sp_err err = {{0}};

    assert_int_equal(
        sp_router_add(r, "GET", "/api/spaces/{id}", "routes/spaces.lua:12", &first, &err), 0);
    /* same method, same shape, another parameter name */
    assert_int_equal(
        sp_router_add(r, "GET", "/api/spaces/{space_id}", "plugins/x.lua:3", &rt, &err), -1);
    assert_null(rt);
    assert_non_null(strstr(err.msg, "routes/spaces.lua:12"));
    assert_non_null(strstr(err.msg, "conflicts with"));
    assert_non_null(strstr(err.msg, "/api/spaces/{space_id}"));
    /* an integer and a string parameter in the same place would both match "/api/spaces/5" */
    err.msg[0] = '\0';
    assert_int_equal(
        sp_router_add(r, "GET", "/api/spaces/{slug:str}", "plugins/y.lua:4", &rt, &err), -1);
    assert_non_null(strstr(err.msg, "routes/spaces.lua:12"));
    /* the same static path twice */
    struct sp_route *health = NULL;
    assert_int_equal(sp_router_add(r, "GET", "/health", "routes/ops.lua:5", &health, &err), 0);
    err.msg[0] = '\0';
    assert_int_equal(sp_router_add(r, "GET", "/health", "routes/ops.lua:9", &rt, &err), -1);
    assert_string_equal(err.msg, "route GET /health conflicts with GET /health declared at "
                                 "routes/ops.lua:5");
    /* nothing was added by the rejected declarations, and the first route still answers */
    assert_int_equal(sp_router_count(r), 2);
    struct sp_match m = must_match(r, "GET", "/api/spaces/5", first);
    param_is(&m, 0, "id", "5");

    /* same path, other methods: fine */
    struct sp_route *patch = NULL, *del = NULL;
    assert_int_equal(
        sp_router_add(r, "PATCH", "/api/spaces/{id}", "routes/spaces.lua:30", &patch, &err), 0);
    assert_int_equal(
        sp_router_add(r, "DELETE", "/api/spaces/{id}", "routes/spaces.lua:40", &del, &err), 0);
    must_match(r, "PATCH", "/api/spaces/5", patch);
    must_match(r, "DELETE", "/api/spaces/5", del);
    /* static and parameter at the same place: not a conflict */
    struct sp_route *mine = NULL;
    assert_int_equal(sp_router_add(r, "GET", "/api/spaces/mine", "r.lua:1", &mine, &err), 0);
    must_match(r, "GET", "/api/spaces/mine", mine);
    /* a longer or shorter path is another shape */
    assert_int_equal(sp_router_add(r, "GET", "/api/spaces/{id}/x", NULL, &rt, &err), 0);
    assert_string_equal(rt->source, "?"); /* a NULL source is allowed */
    assert_int_equal(sp_router_add(r, "GET", "/api/spaces", "r.lua:2", &rt, &err), 0);
    assert_int_equal(sp_router_count(r), 7);
}

static void test_malformed_patterns(void **state)
{
    struct sp_router *r = *state;

    add(r, "GET", "/fine");
    bad_pattern(r, "", "must start with /");
    bad_pattern(r, "api/spaces", "must start with /");
    bad_pattern(r, " /api", "must start with /");
    bad_pattern(r, "{id}", "must start with /");
    bad_pattern(r, "//", "empty segment");
    bad_pattern(r, "/api//spaces", "empty segment");
    bad_pattern(r, "/api/", "empty segment");
    bad_pattern(r, "//api", "empty segment");
    bad_pattern(r, "/api/{id", "malformed parameter");
    bad_pattern(r, "/api/{}", "malformed parameter");
    bad_pattern(r, "/api/{id}x", "malformed parameter");
    bad_pattern(r, "/api/{a{b}", "malformed parameter");
    bad_pattern(r, "/api/{id:int}", "malformed parameter");
    bad_pattern(r, "/api/{:str}", "malformed parameter");
    bad_pattern(r, "/api/{a b}", "malformed parameter");
    bad_pattern(r, "/api/a{id}b", "braces must enclose a whole segment");
    bad_pattern(r, "/api/a{id}", "braces must enclose a whole segment");
    bad_pattern(r, "/api/id}", "braces must enclose a whole segment");
    bad_pattern(r, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "too many parameters");
    assert_int_equal(sp_router_count(r), 1);
    /* names may use letters, digits and underscores */
    struct sp_route *rt = add(r, "GET", "/n/{Space_ID2}/{x:str}");
    struct sp_match m = must_match(r, "GET", "/n/3/y", rt);
    param_is(&m, 0, "Space_ID2", "3");
    param_is(&m, 1, "x", "y");
}

static void test_allow(void **state)
{
    struct sp_router *r = *state;
    char buf[128];

    add(r, "GET", "/api/spaces");
    add(r, "POST", "/api/spaces");
    add(r, "GET", "/api/spaces/{id}");
    add(r, "PATCH", "/api/spaces/{id}");
    add(r, "DELETE", "/api/spaces/{id}");
    add(r, "GET", "/api/spaces/mine");

    assert_int_equal(sp_router_allow(r, "/api/spaces", buf, sizeof(buf)), 2);
    assert_string_equal(buf, "GET, POST");
    assert_int_equal(sp_router_allow(r, "/api/spaces/", buf, sizeof(buf)), 2);
    assert_string_equal(buf, "GET, POST");
    assert_int_equal(sp_router_allow(r, "/api/spaces/4", buf, sizeof(buf)), 3);
    assert_string_equal(buf, "GET, PATCH, DELETE");
    assert_int_equal(sp_router_allow(r, "/api/spaces/mine", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "GET"); /* GET listed once although two routes match */
    strcpy(buf, "stale");
    assert_int_equal(sp_router_allow(r, "/api/nothing", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(sp_router_allow(r, "/api/spaces/x", buf, sizeof(buf)), 0);

    /* a small buffer is never overrun: whole methods only */
    char small[12];
    memset(small, 'z', sizeof(small));
    assert_int_equal(sp_router_allow(r, "/api/spaces/4", small, 8), 1);
    assert_string_equal(small, "GET");
    assert_int_equal(small[8], 'z');
}

/* "/s/s/.../s" with n segments, segment `param` (0-based; -1 none) replaced by text. */
static void long_path(char *buf, size_t cap, int n, int param, const char *text)
{
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "/%s", i == param ? text : "s");
}

static void test_long_routes(void **state)
{
    struct sp_router *r = *state;
    static const int sizes[] = {31, 32, 33, 64, 100};
    char pattern[512], path[512];

    for (size_t k = 0; k < SP_ARRAY_LEN(sizes); k++) {
        int n = sizes[k];
        long_path(pattern, sizeof(pattern), n, -1, NULL);
        struct sp_route *all_static = add(r, "GET", pattern);
        long_path(pattern, sizeof(pattern), n, n - 1, "{last:str}");
        struct sp_route *last = add(r, "GET", pattern);
        long_path(pattern, sizeof(pattern), n, 0, "{first:str}");
        struct sp_route *first = add(r, "GET", pattern);

        long_path(path, sizeof(path), n, -1, NULL);
        must_match(r, "GET", path, all_static);
        long_path(path, sizeof(path), n, n - 1, "x");
        struct sp_match m = must_match(r, "GET", path, last); /* beats {first} */
        param_is(&m, 0, "last", "x");
        long_path(path, sizeof(path), n, 0, "x");
        m = must_match(r, "GET", path, first);
        param_is(&m, 0, "first", "x");
        long_path(path, sizeof(path), n, 1, "x");
        must_404(r, "GET", path);
    }
}

/* "/first/a/a..." with n segments in all */
static void shape_path(char *buf, size_t cap, const char *first, int n, const char *end)
{
    size_t len = (size_t)snprintf(buf, cap, "/%s", first);

    for (int i = 1; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "/a");
    snprintf(buf + len, cap - len, "%s", end);
}

/* Routes are looked up by their number of segments and their first segment: at every length,
 * the short ones and those past the buckets alike, each path still finds its route only. */
static void test_lookup_by_shape(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *stat[12], *param[12];
    char pattern[256], path[256];

    for (int n = 1; n < 12; n++) {
        shape_path(pattern, sizeof(pattern), "s", n, "");
        stat[n] = add(r, "GET", pattern);
        shape_path(pattern, sizeof(pattern), "{x:str}", n, "");
        param[n] = add(r, "GET", pattern);
    }
    for (int n = 1; n < 12; n++) {
        shape_path(path, sizeof(path), "s", n, "");
        must_match(r, "GET", path, stat[n]);
        shape_path(path, sizeof(path), "s", n, "/");
        must_match(r, "GET", path, stat[n]);
        shape_path(path, sizeof(path), "t", n, "");
        struct sp_match m = must_match(r, "GET", path, param[n]);
        param_is(&m, 0, "x", "t");
        shape_path(path, sizeof(path), "st", n, "");
        must_match(r, "GET", path, param[n]);
        must_405(r, "POST", path, "GET");
        shape_path(path, sizeof(path), "s", n, "//");
        must_404(r, "GET", path);
    }
    shape_path(path, sizeof(path), "s", 12, "");
    must_404(r, "GET", path);
    must_404(r, "GET", "/");
    must_404(r, "GET", "s");
    must_404(r, "GET", "/s//a");
}

static void test_many_routes(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *routes[200], *posts[200];
    char pattern[64], path[64];

    for (int i = 0; i < 200; i++) {
        snprintf(pattern, sizeof(pattern), "/api/r%d/items/{id}", i);
        routes[i] = add(r, "GET", pattern);
        posts[i] = NULL;
        if (i % 3 == 0) {
            snprintf(pattern, sizeof(pattern), "/api/r%d/items/{id}", i);
            posts[i] = add(r, "POST", pattern);
        }
    }
    int n = sp_router_count(r);
    assert_int_equal(n, 200 + 67);
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof(path), "/api/r%d/items/%d", i, 1000 + i);
        struct sp_match m = must_match(r, "GET", path, routes[i]);
        assert_int_equal(m.nparams, 1);
        assert_int_equal(m.params[0].ival, 1000 + i);
        if (posts[i] != NULL) {
            must_match(r, "POST", path, posts[i]);
        } else {
            must_405(r, "POST", path, "GET");
        }
        assert_ptr_equal(sp_router_at(r, i + (i + 2) / 3), routes[i]);
    }
    must_404(r, "GET", "/api/r200/items/1");
    must_404(r, "GET", "/api/r1/items/0");
    must_404(r, "GET", "/api/r1/items");

    /* and they still conflict */
    struct sp_route *rt = NULL;
    sp_err err = {{0}};
    assert_int_equal(sp_router_add(r, "GET", "/api/r150/items/{n}", "late.lua:1", &rt, &err), -1);
    assert_non_null(strstr(err.msg, "routes/test.lua:"));
    assert_int_equal(sp_router_count(r), n);
}

static void test_router_frees_roles(void **state)
{
    struct sp_router *r = *state;
    struct sp_route *rt = add(r, "GET", "/admin");

    /* the caller fills roles with its own allocations; the router frees them */
    rt->auth = 1;
    rt->nroles = 2;
    rt->roles = calloc(2, sizeof(char *));
    assert_non_null(rt->roles);
    rt->roles[0] = strdup("admin");
    rt->roles[1] = strdup("owner");
    rt->ref = 3;
    struct sp_match m = must_match(r, "GET", "/admin", rt);
    assert_int_equal(m.route->auth, 1);
    assert_int_equal(m.route->ref, 3);
    assert_string_equal(m.route->roles[1], "owner");
    sp_router_free(NULL); /* fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_static_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_str_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_beats_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_matches_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_by_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_frees_roles, setup, teardown),
    };

    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
