/* router.c: compiled path patterns and matching. A generation has a few hundred routes at
 * most, so a scan over compiled segments is both simple and fast (no allocation per match). */
#include "router.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum seg_kind { SEG_STATIC, SEG_INT, SEG_STR };

struct sp_seg {
    enum seg_kind kind;
    char *text; /* static text, or the parameter's name */
    size_t len;
    uint32_t hash; /* of a static segment's text (seg_hash): a quick no before its memcmp */
};

static uint32_t seg_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

#define NSEG_BUCKETS 8 /* routes by their number of segments; the last holds the longer ones */

struct sp_router {
    struct sp_route **routes;
    int n, cap;
    int *bucket[NSEG_BUCKETS]; /* indices into routes, in declaration order */
    int nbucket[NSEG_BUCKETS];
};

struct sp_router *sp_router_new(void)
{
    return calloc(1, sizeof(struct sp_router));
}

static void route_free(struct sp_route *rt)
{
    if (rt == NULL)
        return;
    for (int i = 0; i < rt->nseg; i++)
        free(rt->segs[i].text);
    for (int i = 0; i < rt->nroles; i++)
        free(rt->roles[i]);
    free(rt->roles);
    for (int i = 0; i < rt->ncache_tags; i++)
        free(rt->cache_tags[i]);
    free(rt->cache_tags);
    free(rt->segs);
    free(rt->method);
    free(rt->pattern);
    free(rt->source);
    free(rt);
}

void sp_router_free(struct sp_router *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->n; i++)
        route_free(r->routes[i]);
    free(r->routes);
    for (int b = 0; b < NSEG_BUCKETS; b++)
        free(r->bucket[b]);
    free(r);
}

static int compile(struct sp_route *rt, const char *pattern, sp_err *err)
{
    const char *p = pattern;

    if (*p != '/') {
        sp_err_set(err, "route path \"%s\" must start with /", pattern);
        return -1;
    }
    while (*p == '/') {
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0 && *p == '\0' && rt->nseg == 0)
            break; /* "/" itself */
        if (len == 0) {
            sp_err_set(err, "route path \"%s\" has an empty segment", pattern);
            return -1;
        }
        struct sp_seg seg = {SEG_STATIC, NULL, len, 0};
        if (start[0] == '{') {
            if (start[len - 1] != '}' || len < 3) {
                sp_err_set(err, "route path \"%s\": malformed parameter", pattern);
                return -1;
            }
            seg.kind = SEG_INT;
            seg.len = len - 2;
            if (len > 6 && memcmp(start + len - 5, ":str}", 5) == 0) {
                seg.kind = SEG_STR;
                seg.len = len - 6;
            }
            for (size_t k = 1; k <= seg.len; k++) {
                if (!isalnum((unsigned char)start[k]) && start[k] != '_') {
                    sp_err_set(err, "route path \"%s\": malformed parameter", pattern);
                    return -1; /* {id:int} would otherwise be a parameter named "id:int" */
                }
            }
            seg.text = strndup(start + 1, seg.len);
            int nparams = 0;
            for (int i = 0; i < rt->nseg; i++)
                nparams += rt->segs[i].kind != SEG_STATIC;
            if (nparams >= SP_ROUTE_MAX_PARAMS) {
                free(seg.text);
                sp_err_set(err, "route path \"%s\": too many parameters", pattern);
                return -1;
            }
        } else {
            if (memchr(start, '{', len) || memchr(start, '}', len)) {
                sp_err_set(err, "route path \"%s\": braces must enclose a whole segment",
                           pattern);
                return -1;
            }
            seg.text = strndup(start, len);
            seg.hash = seg_hash(start, len);
        }
        rt->segs = realloc(rt->segs, sizeof(*rt->segs) * (size_t)(rt->nseg + 1));
        rt->segs[rt->nseg++] = seg;
    }
    if (*p != '\0') {
        sp_err_set(err, "route path \"%s\" is malformed", pattern);
        return -1;
    }
    return 0;
}

/* Two patterns conflict when some path would match both with the same precedence. */
static int same_shape(const struct sp_route *a, const struct sp_route *b)
{
    if (a->nseg != b->nseg)
        return 0;
    for (int i = 0; i < a->nseg; i++) {
        const struct sp_seg *x = &a->segs[i], *y = &b->segs[i];
        if ((x->kind == SEG_STATIC) != (y->kind == SEG_STATIC))
            return 0; /* {id} and {name:str} score alike, so "/5" would match either */
        if (x->kind == SEG_STATIC && (x->len != y->len || memcmp(x->text, y->text, x->len) != 0))
            return 0;
    }
    return 1;
}

int sp_router_add(struct sp_router *r, const char *method, const char *pattern,
                  const char *source, struct sp_route **out, sp_err *err)
{
    struct sp_route *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        sp_err_set(err, "out of memory");
        return -1;
    }
    rt->method = strdup(method);
    rt->pattern = strdup(pattern);
    rt->source = strdup(source ? source : "?");
    rt->ref = -1;
    if (rt->method == NULL || rt->pattern == NULL || rt->source == NULL) {
        sp_err_set(err, "out of memory");
        route_free(rt);
        return -1;
    }
    if (compile(rt, pattern, err) != 0) {
        route_free(rt);
        return -1;
    }
    for (int i = 0; i < r->n; i++) {
        struct sp_route *o = r->routes[i];
        if (strcmp(o->method, method) == 0 && same_shape(o, rt)) {
            sp_err_set(err, "route %s %s conflicts with %s %s declared at %s", method, pattern,
                       o->method, o->pattern, o->source);
            route_free(rt);
            return -1;
        }
    }
    int b = rt->nseg < NSEG_BUCKETS ? rt->nseg : NSEG_BUCKETS - 1;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 32;
        struct sp_route **routes = realloc(r->routes, sizeof(*routes) * (size_t)cap);
        if (routes == NULL)
            goto oom;
        r->routes = routes;
        r->cap = cap;
    }
    int *grown = realloc(r->bucket[b], sizeof(int) * (size_t)(r->nbucket[b] + 1));
    if (grown == NULL)
        goto oom;
    r->bucket[b] = grown;
    r->bucket[b][r->nbucket[b]++] = r->n;
    r->routes[r->n++] = rt;
    *out = rt;
    return 0;
oom:
    sp_err_set(err, "out of memory");
    route_free(rt);
    return -1;
}

/* Matches path against rt; on success fills params and returns 0, else -1. */
static int match_one(const struct sp_route *rt, const char *path, struct sp_match *m)
{
    const char *p = path;
    int np = 0;

    m->nparams = 0; /* "/" returns before the end */
    if (rt->nseg == 0)
        return (path[0] == '/' && path[1] == '\0') ? 0 : -1;
    for (int i = 0; i < rt->nseg; i++) {
        const struct sp_seg *seg = &rt->segs[i];
        if (*p != '/')
            return -1;
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 0)
            return -1;
        switch (seg->kind) {
        case SEG_STATIC:
            if (len != seg->len || memcmp(start, seg->text, len) != 0)
                return -1;
            break;
        case SEG_INT: {
            int64_t v = 0;
            if (len > 18 || start[0] == '0')
                return -1; /* positive, without leading zeros, and no overflow */
            for (size_t k = 0; k < len; k++) {
                if (start[k] < '0' || start[k] > '9')
                    return -1;
                v = v * 10 + (start[k] - '0');
            }
            m->params[np++] = (struct sp_param){seg->text, start, len, 1, v};
            break;
        }
        case SEG_STR: m->params[np++] = (struct sp_param){seg->text, start, len, 0, 0}; break;
        }
    }
    if (*p != '\0' && !(p[0] == '/' && p[1] == '\0'))
        return -1; /* a trailing slash is tolerated */
    m->nparams = np;
    return 0;
}

/* A path's shape as match_one reads it: its number of segments (a trailing slash aside) and
 * its first two segments; -1 when no route can match it. Routes of another shape are skipped
 * without a look at their other segments: /healthz compares a handful of routes, not all,
 * and /api/users/profile not every /api/<x>/<y>. */
struct shape {
    int nseg;
    const char *first, *second;
    size_t first_len, second_len;
    uint32_t first_hash, second_hash;
};

static int path_shape(const char *path, struct shape *sh)
{
    const char *p = path;

    sh->nseg = 0;
    sh->first = sh->second = NULL;
    sh->first_len = sh->second_len = 0;
    sh->first_hash = sh->second_hash = 0;
    if (p[0] == '/' && p[1] == '\0')
        return 0;
    while (*p == '/') {
        if (p[1] == '\0' && sh->nseg > 0)
            return 0; /* a trailing slash is tolerated */
        const char *start = ++p;
        while (*p && *p != '/')
            p++;
        if (p == start)
            return -1;
        if (sh->nseg == 0) {
            sh->first = start;
            sh->first_len = (size_t)(p - start);
            sh->first_hash = seg_hash(start, sh->first_len);
        } else if (sh->nseg == 1) {
            sh->second = start;
            sh->second_len = (size_t)(p - start);
            sh->second_hash = seg_hash(start, sh->second_len);
        }
        sh->nseg++;
    }
    return *p == '\0' ? 0 : -1;
}

/* Whether rt cannot match a path of that shape (match_one would say no). */
static int other_shape(const struct sp_route *rt, const struct shape *sh)
{
    if (rt->nseg != sh->nseg)
        return 1;
    /* by length and hash only: match_one compares the text of every static segment */
    if (rt->nseg > 0 && rt->segs[0].kind == SEG_STATIC &&
        (rt->segs[0].len != sh->first_len || rt->segs[0].hash != sh->first_hash))
        return 1;
    return rt->nseg > 1 && rt->segs[1].kind == SEG_STATIC &&
           (rt->segs[1].len != sh->second_len || rt->segs[1].hash != sh->second_hash);
}

/* Whether a outranks b, two routes that matched the same path (so with as many segments):
 * the first segment where one is static and the other a parameter decides. Compared segment
 * by segment, not as a bit score, so a route of any length ranks. */
static int outranks(const struct sp_route *a, const struct sp_route *b)
{
    for (int i = 0; i < a->nseg && i < b->nseg; i++) {
        int sa = a->segs[i].kind == SEG_STATIC, sb = b->segs[i].kind == SEG_STATIC;
        if (sa != sb)
            return sa;
    }
    return 0;
}

enum sp_match_result sp_router_match(const struct sp_router *r, const char *method,
                                     const char *path, struct sp_match *m)
{
    struct sp_match tmp;
    struct shape sh;
    int path_known = 0;
    size_t alen = 0;

    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    m->route = NULL;
    m->allow[0] = '\0';
    if (path_shape(path, &sh) != 0)
        return SP_MATCH_NOT_FOUND;
    int b = sh.nseg < NSEG_BUCKETS ? sh.nseg : NSEG_BUCKETS - 1;
    for (int k = 0; k < r->nbucket[b]; k++) {
        struct sp_route *rt = r->routes[r->bucket[b][k]];
        /* this method's routes; whether another method's match is the 405 below */
        if (other_shape(rt, &sh) || strcmp(rt->method, method) != 0 ||
            match_one(rt, path, &tmp) < 0)
            continue;
        if (m->route == NULL || outranks(rt, m->route)) {
            m->route = rt;
            m->nparams = tmp.nparams;
            memcpy(m->params, tmp.params, (size_t)tmp.nparams * sizeof(tmp.params[0]));
            if (tmp.nparams == 0)
                break; /* all static: no other route of this method matches the same path */
        }
    }
    if (m->route != NULL)
        return SP_MATCH_OK;
    /* 405 when the path has routes (of other methods): their methods, written only now */
    for (int k = 0; k < r->nbucket[b]; k++) {
        struct sp_route *rt = r->routes[r->bucket[b][k]];
        if (other_shape(rt, &sh) || match_one(rt, path, &tmp) < 0)
            continue;
        path_known = 1;
        if (!strstr(m->allow, rt->method) && alen + strlen(rt->method) + 3 < sizeof(m->allow))
            alen += (size_t)snprintf(m->allow + alen, sizeof(m->allow) - alen, "%s%s",
                                     alen ? ", " : "", rt->method);
    }
    return path_known ? SP_MATCH_BAD_METHOD : SP_MATCH_NOT_FOUND;
}

int sp_router_allow(const struct sp_router *r, const char *path, char *buf, size_t cap)
{
    struct sp_match tmp;
    struct shape sh;
    size_t len = 0;
    int n = 0;

    buf[0] = '\0';
    if (path_shape(path, &sh) != 0)
        return 0;
    int b = sh.nseg < NSEG_BUCKETS ? sh.nseg : NSEG_BUCKETS - 1;
    for (int k = 0; k < r->nbucket[b]; k++) {
        struct sp_route *rt = r->routes[r->bucket[b][k]];
        if (other_shape(rt, &sh) || match_one(rt, path, &tmp) < 0 || strstr(buf, rt->method))
            continue;
        if (len + strlen(rt->method) + 3 >= cap)
            break;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", rt->method);
        n++;
    }
    return n;
}

int sp_router_count(const struct sp_router *r)
{
    return r->n;
}

struct sp_route *sp_router_at(const struct sp_router *r, int i)
{
    return r->routes[i];
}
