/* cache.h: change versions and a short-lived per-worker store of public GET answers.
 *
 * A tag names some data (the scripts use table names; the database announces changes of a
 * table on a NOTIFY channel with its name). Each tag has a version, shared by the workers of
 * one instance, that grows at every change of its data, and all versions grow when everything
 * may have changed (a missed notification). An answer stored under the versions read before
 * its handler ran is served only while they are unchanged and its time to live lasts.
 * Knows bytes and tags, never HTTP, Lua or what a tag means. */
#ifndef SP_CACHE_H
#define SP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sp.h"

#define SP_CACHE_MAX_TAGS 8
#define SP_CACHE_ETAG_LEN 19 /* "\"0123456789abcdef\"" and the NUL */

/* The versions shared by every worker: the master maps them before forking. Without this
 * call (command-line tools, script tests) each process keeps its own. 0 or -1. */
int sp_cache_shared_init(sp_err *err);

/* The data of tag (len bytes, need not be NUL-terminated) changed. */
void sp_cache_touch(const char *tag, size_t len);
/* Anything may have changed. */
void sp_cache_flush_all(void);
/* The version of tag: grows whenever tag is touched or everything is flushed. */
uint64_t sp_cache_version(const char *tag);

/* A stored answer; its bytes are the store's, valid until the next put or free. */
struct sp_cache_entry {
    char etag[SP_CACHE_ETAG_LEN];
    const char *headers; /* "name\0value\0" pairs */
    size_t headers_len;
    const char *body;
    size_t body_len;
};

struct sp_cache;

/* On success the store is the caller's, to free with sp_cache_free(). It keeps at most
 * max_entries answers and max_bytes of them (an answer above an eighth of it is not kept). */
struct sp_cache *sp_cache_new(int max_entries, size_t max_bytes, int ttl_ms, sp_err *err);
void sp_cache_free(struct sp_cache *c); /* NULL is fine */

/* The answer stored for key by generation gen under exactly these versions, still fresh;
 * else NULL (a stale one is dropped). */
const struct sp_cache_entry *sp_cache_get(
    struct sp_cache *c, const char *key, uint64_t gen, const uint64_t *versions, int nversions);
/* Stores a copy (replacing any answer of key). Full: the oldest answers make room. */
void sp_cache_put(struct sp_cache *c,
                  const char *key,
                  uint64_t gen,
                  const uint64_t *versions,
                  int nversions,
                  const char *etag,
                  const char *headers,
                  size_t headers_len,
                  const char *body,
                  size_t body_len);
/* Drops every answer (a new script generation, a lost notification channel). */
void sp_cache_clear(struct sp_cache *c);

/* A strong entity tag of an answer: its body and its headers ("name\0value\0" pairs, in any
 * order). out: "\"<16 hex digits>\"". The same answer has the same tag on every instance. */
void sp_cache_etag(const char *body,
                   size_t body_len,
                   const char *headers,
                   size_t headers_len,
                   char out[SP_CACHE_ETAG_LEN]);
/* 1 when an If-None-Match value ("*", or a list of tags, weak or strong) matches etag
 * (the weak comparison of RFC 9110 13.1.2). */
int sp_cache_etag_matches(const char *if_none_match, const char *etag);

#endif
