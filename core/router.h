/* router.h: the route table of one script generation: method + path pattern -> route.
 * Patterns are "/api/spaces/{id}" where {name} is a positive 64-bit integer and {name:str}
 * any one non-empty segment. Static segments win over parameters. Knows paths, never Lua. */
#ifndef SP_ROUTER_H
#define SP_ROUTER_H

#include <stdint.h>

#include "sp.h"

#define SP_ROUTE_MAX_PARAMS 8

struct sp_route {
    char *method;  /* "GET", "POST", ... */
    char *pattern; /* as declared */
    char *source;  /* "scripts/routes/users.lua:42", for conflicts and `spacer routes` */
    int auth;      /* a valid token is required */
    char **roles;  /* NULL: any authenticated user */
    int nroles;
    int compat;    /* a compatibility path of the old web app */
    int etag;      /* GET answers carry an ETag; If-None-Match may get a 304 */
    char **cache_tags; /* non-NULL: a public GET whose answers may be cached under these tags */
    int ncache_tags;
    int ref;       /* the generation's reference to the route's Lua table */
    int raw_body;  /* opts.raw_body as it was once the scripts loaded (gen.c) */
    /* compiled */
    int nseg;
    struct sp_seg *segs;
};

struct sp_param {
    const char *name;
    const char *value; /* points into the matched path; not NUL-terminated */
    size_t len;
    int is_int;
    int64_t ival;
};

struct sp_match {
    struct sp_route *route;
    int nparams;
    struct sp_param params[SP_ROUTE_MAX_PARAMS];
    char allow[128]; /* SP_MATCH_BAD_METHOD: "GET, PATCH" */
};

enum sp_match_result { SP_MATCH_OK, SP_MATCH_NOT_FOUND, SP_MATCH_BAD_METHOD };

struct sp_router;

struct sp_router *sp_router_new(void);
void sp_router_free(struct sp_router *r); /* frees every route too; NULL is fine */

/* Adds a route. On success *out is owned by the router (fill auth/roles/ref on it).
 * A malformed pattern or one that conflicts with an existing route is -1; a conflict names
 * the other route's source. */
int sp_router_add(struct sp_router *r, const char *method, const char *pattern,
                  const char *source, struct sp_route **out, sp_err *err);

/* HEAD matches GET routes. path is the URL path without the query. */
enum sp_match_result sp_router_match(const struct sp_router *r, const char *method,
                                     const char *path, struct sp_match *m);

/* Methods declared for a path ("GET, POST"), for preflights; 0 when the path is unknown. */
int sp_router_allow(const struct sp_router *r, const char *path, char *buf, size_t cap);

int sp_router_count(const struct sp_router *r);
struct sp_route *sp_router_at(const struct sp_router *r, int i);

#endif
