/* fuzz_router.c: core/router.c. Odd first byte: the rest is a request path matched against
 * the real route table (scripts/ loaded as `spacer check` does, from the working directory)
 * with a method the first byte picks; the match must be consistent with what the path holds
 * and with sp_router_allow. Even first byte: the rest is a route pattern; one that compiles
 * must match an instance of itself ({id} -> 7, {name:str} -> s), and declaring it twice must
 * conflict. */
#include "conf.h"
#include "fuzz.h"
#include "gen.h"
#include "lua_spacer.h"
#include "router.h"

static struct sp_gen *gen;
static const char *const methods[] = {"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sp_conf *conf = NULL;
    sp_err err;

    (void)argc;
    (void)argv;
    if (sp_conf_parse("", "defaults", &conf, &err) != 0 ||
        sp_gen_load(conf, -1, sp_lua_openers, 0, &gen, &err) != 0) {
        fprintf(stderr, "fuzz_router: cannot load the route table (run from the project's "
                        "root): %s\n", err.msg);
        exit(1);
    }
    return 0; /* conf and gen live as long as the process */
}

static void check_path(const char *method, const char *path)
{
    struct sp_match m;
    char allow[256];
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;

    memset(&m, 0xa5, sizeof(m));
    enum sp_match_result res = sp_router_match(gen->router, method, path, &m);
    int known = sp_router_allow(gen->router, path, allow, sizeof(allow)) > 0;

    if ((res == SP_MATCH_NOT_FOUND) == known)
        FUZZ_FAIL("%s %s: result %d but allow \"%s\"", method, path, (int)res, allow);
    if (res == SP_MATCH_BAD_METHOD && (m.route != NULL || m.allow[0] == '\0'))
        FUZZ_FAIL("%s %s: 405 without Allow", method, path);
    if (res != SP_MATCH_OK)
        return;
    if (m.route == NULL || strcmp(m.route->method, want) != 0)
        FUZZ_FAIL("%s %s: matched a route of another method", method, path);
    if (m.nparams < 0 || m.nparams > SP_ROUTE_MAX_PARAMS)
        FUZZ_FAIL("%s %s: %d parameters", method, path, m.nparams);
    for (int i = 0; i < m.nparams; i++) {
        const struct sp_param *p = &m.params[i];
        if (p->value < path || p->value + p->len > path + strlen(path) || p->len == 0 ||
            memchr(p->value, '/', p->len) != NULL)
            FUZZ_FAIL("%s %s: parameter %s is not one segment of the path", method, path,
                      p->name);
        if (p->is_int) {
            int64_t v = 0;
            for (size_t k = 0; k < p->len; k++) {
                if (p->value[k] < '0' || p->value[k] > '9')
                    FUZZ_FAIL("%s %s: integer parameter %s is not digits", method, path, p->name);
                v = v * 10 + (p->value[k] - '0');
            }
            if (v != p->ival || v <= 0)
                FUZZ_FAIL("%s %s: parameter %s read as %lld", method, path, p->name,
                          (long long)p->ival);
        }
    }
}

/* "/a/{id}/{n:str}" -> "/a/7/s". */
static void instance_of(const char *pattern, char *out, size_t cap)
{
    size_t n = 0;

    for (const char *p = pattern; *p && n + 2 < cap;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            size_t len = (size_t)(end - p + 1);
            int is_str = len > 6 && memcmp(end - 4, ":str", 4) == 0;
            out[n++] = is_str ? 's' : '7';
            p += len;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
}

static void check_pattern(const char *pattern)
{
    struct sp_router *r = sp_router_new();
    struct sp_route *rt = NULL, *again = NULL;
    struct sp_match m;
    char path[8192];
    sp_err err;

    if (r == NULL)
        abort();
    if (sp_router_add(r, "GET", pattern, "fuzz.lua:1", &rt, &err) != 0)
        goto done;
    if (strlen(pattern) >= sizeof(path) / 2)
        goto done;
    instance_of(pattern, path, sizeof(path));
    if (sp_router_match(r, "GET", path, &m) != SP_MATCH_OK || m.route != rt)
        FUZZ_FAIL("pattern \"%s\" does not match its instance \"%s\"", pattern, path);
    if (sp_router_add(r, "GET", pattern, "fuzz.lua:2", &again, &err) == 0)
        FUZZ_FAIL("pattern \"%s\" declared twice without a conflict", pattern);
done:
    sp_router_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *s = fuzz_cstr(data + 1, size - 1);
    if (s == NULL)
        return 0;
    if (data[0] & 1)
        check_path(methods[(data[0] >> 1) % (sizeof(methods) / sizeof(methods[0]))], s);
    else
        check_pattern(s);
    free(s);
    return 0;
}
