/* cache.c: change versions shared by an instance's workers (a small anonymous shared mapping,
 * lock-free counters) and each worker's store of answers: a chained hash table with its
 * entries on a list in insertion order, the oldest evicted first when it is full. */
#include "cache.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define TAG_SLOTS 64 /* tags hash to slots; two tags in one slot only invalidate more often */

struct shared {
    atomic_ullong flush;
    atomic_ullong tags[TAG_SLOTS];
};

static struct shared local_versions; /* until (or without) sp_cache_shared_init() */
static struct shared *sh = &local_versions;

struct node {
    struct node *chain; /* the bucket's next */
    struct node *older, *newer;
    uint64_t hash, gen, expires_us;
    int nversions;
    uint64_t versions[SP_CACHE_MAX_TAGS];
    char *key;
    struct sp_cache_entry e; /* headers and body point into bytes */
    char *bytes;
};

struct sp_cache {
    struct node **buckets;
    size_t mask;
    int count, max;
    size_t bytes, max_bytes; /* of the answers kept */
    uint64_t ttl_us;
    struct node *oldest, *newest;
};

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* A fast non-cryptographic hash of n bytes, four words at a time. */
static uint64_t hash_bytes(const char *p, size_t n, uint64_t seed)
{
    const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xff51afd7ed558ccdull;
    uint64_t a = seed ^ k1, b = seed ^ k2, c = ~seed, d = seed + n, w[4];

    for (; n >= 32; p += 32, n -= 32) {
        memcpy(w, p, 32);
        a = (a ^ w[0]) * k2, a ^= a >> 31;
        b = (b ^ w[1]) * k2, b ^= b >> 31;
        c = (c ^ w[2]) * k2, c ^= c >> 31;
        d = (d ^ w[3]) * k2, d ^= d >> 31;
    }
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(w, p, 8);
        a = (a ^ w[0]) * k2, a ^= a >> 31;
    }
    w[0] = 0;
    if (n > 0)
        memcpy(w, p, n);
    a = (a ^ w[0] ^ (uint64_t)n << 56) * k1;
    a ^= b * k1 + (c ^ (d >> 7));
    a = (a ^ (a >> 33)) * k2;
    return a ^ (a >> 29);
}

/* ---- versions ----------------------------------------------------------------------- */

int sp_cache_shared_init(sp_err *err)
{
    void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);

    if (p == MAP_FAILED) {
        sp_err_set(err, "cannot map the shared cache versions");
        return -1;
    }
    sh = p; /* zero-filled */
    return 0;
}

void sp_cache_touch(const char *tag, size_t len)
{
    atomic_fetch_add(&sh->tags[hash_str(tag, len) % TAG_SLOTS], 1);
}

void sp_cache_flush_all(void)
{
    atomic_fetch_add(&sh->flush, 1);
}

/* Both counters only grow, so their sum grows whenever either does. */
uint64_t sp_cache_version(const char *tag)
{
    return atomic_load(&sh->flush) + atomic_load(&sh->tags[hash_str(tag, strlen(tag)) % TAG_SLOTS]);
}

/* ---- the store ---------------------------------------------------------------------- */

struct sp_cache *sp_cache_new(int max_entries, size_t max_bytes, int ttl_ms, sp_err *err)
{
    struct sp_cache *c = calloc(1, sizeof(*c));
    size_t n = 16;

    if (max_entries < 1)
        max_entries = 1;
    while (n < (size_t)max_entries * 2)
        n *= 2;
    if (c == NULL || (c->buckets = calloc(n, sizeof(*c->buckets))) == NULL) {
        free(c);
        sp_err_set(err, "out of memory for the response cache");
        return NULL;
    }
    c->mask = n - 1;
    c->max = max_entries;
    c->max_bytes = max_bytes;
    c->ttl_us = (uint64_t)ttl_ms * 1000;
    return c;
}

static void node_unlink(struct sp_cache *c, struct node *nd)
{
    struct node **pp = &c->buckets[nd->hash & c->mask];

    while (*pp != nd)
        pp = &(*pp)->chain;
    *pp = nd->chain;
    if (nd->older)
        nd->older->newer = nd->newer;
    else
        c->oldest = nd->newer;
    if (nd->newer)
        nd->newer->older = nd->older;
    else
        c->newest = nd->older;
    c->count--;
    c->bytes -= nd->e.headers_len + nd->e.body_len;
    free(nd->bytes);
    free(nd->key);
    free(nd);
}

void sp_cache_clear(struct sp_cache *c)
{
    while (c != NULL && c->oldest != NULL)
        node_unlink(c, c->oldest);
}

void sp_cache_free(struct sp_cache *c)
{
    if (c == NULL)
        return;
    sp_cache_clear(c);
    free(c->buckets);
    free(c);
}

static struct node *node_find(struct sp_cache *c, const char *key, uint64_t h)
{
    for (struct node *nd = c->buckets[h & c->mask]; nd != NULL; nd = nd->chain)
        if (nd->hash == h && strcmp(nd->key, key) == 0)
            return nd;
    return NULL;
}

const struct sp_cache_entry *sp_cache_get(
    struct sp_cache *c, const char *key, uint64_t gen, const uint64_t *versions, int nversions)
{
    struct node *nd = node_find(c, key, hash_str(key, strlen(key)));

    if (nd == NULL)
        return NULL;
    if (nd->gen != gen || nd->nversions != nversions || sp_now_us() >= nd->expires_us ||
        memcmp(nd->versions, versions, sizeof(*versions) * (size_t)nversions) != 0) {
        node_unlink(c, nd);
        return NULL;
    }
    return &nd->e;
}

void sp_cache_put(struct sp_cache *c,
                  const char *key,
                  uint64_t gen,
                  const uint64_t *versions,
                  int nversions,
                  const char *etag,
                  const char *headers,
                  size_t headers_len,
                  const char *body,
                  size_t body_len)
{
    uint64_t h = hash_str(key, strlen(key));
    struct node *nd = node_find(c, key, h);

    if (nd != NULL)
        node_unlink(c, nd);
    size_t size = headers_len + body_len;

    if (nversions > SP_CACHE_MAX_TAGS || c->ttl_us == 0 || size > c->max_bytes / 8)
        return;
    while (c->count >= c->max || c->bytes + size > c->max_bytes)
        node_unlink(c, c->oldest);
    if ((nd = calloc(1, sizeof(*nd))) == NULL || (nd->key = strdup(key)) == NULL ||
        (nd->bytes = malloc(headers_len + body_len + 1)) == NULL) {
        if (nd != NULL)
            free(nd->key);
        free(nd);
        return; /* not cached: the answer was sent all the same */
    }
    if (headers_len > 0) /* headers may be NULL then */
        memcpy(nd->bytes, headers, headers_len);
    if (body_len > 0)
        memcpy(nd->bytes + headers_len, body, body_len);
    nd->e.headers = nd->bytes;
    nd->e.headers_len = headers_len;
    nd->e.body = nd->bytes + headers_len;
    nd->e.body_len = body_len;
    c->bytes += size;
    snprintf(nd->e.etag, sizeof(nd->e.etag), "%s", etag);
    nd->hash = h;
    nd->gen = gen;
    nd->expires_us = sp_now_us() + c->ttl_us;
    nd->nversions = nversions;
    memcpy(nd->versions, versions, sizeof(*versions) * (size_t)nversions);
    nd->chain = c->buckets[h & c->mask];
    c->buckets[h & c->mask] = nd;
    nd->older = c->newest;
    if (c->newest)
        c->newest->newer = nd;
    else
        c->oldest = nd;
    c->newest = nd;
    c->count++;
}

/* ---- entity tags ------------------------------------------------------------------- */

void sp_cache_etag(const char *body,
                   size_t body_len,
                   const char *headers,
                   size_t headers_len,
                   char out[SP_CACHE_ETAG_LEN])
{
    uint64_t h = hash_bytes(body, body_len, 0x5370616365ull), sum = 0;
    const char *p = headers, *e = headers + headers_len;

    /* Each header pair hashed alone and the hashes added: the order does not count. */
    while (p < e) {
        size_t name = strnlen(p, (size_t)(e - p));
        size_t value = p + name + 1 < e ? strnlen(p + name + 1, (size_t)(e - p - name - 1)) : 0;
        size_t n = name + 1 + value;
        sum += hash_bytes(p, n < (size_t)(e - p) ? n : (size_t)(e - p), 0x4865ull);
        p += n + 1;
    }
    h = hash_bytes((const char *)&sum, sizeof(sum), h);
    out[0] = '"'; /* "%016llx" without printf: it runs for every tagged answer */
    for (int i = 16; i >= 1; i--, h >>= 4)
        out[i] = "0123456789abcdef"[h & 15];
    out[17] = '"';
    out[18] = '\0';
}

int sp_cache_etag_matches(const char *inm, const char *etag)
{
    size_t len = strlen(etag);
    const char *p = inm;

    if (inm == NULL)
        return 0;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return 0; /* not a list of entity tags: no match */
        const char *q = strchr(p + 1, '"');
        if (q == NULL)
            return 0;
        if ((size_t)(q + 1 - p) == len && memcmp(p, etag, len) == 0)
            return 1;
        p = q + 1;
    }
    return 0;
}
