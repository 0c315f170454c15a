/* auth.c: access tokens (HS256 JWTs through libjwt, claims read with cJSON) and bcrypt
 * passwords (libxcrypt), hashed on a small thread pool whose results come back on the libevent
 * loop through event_active(). Knows tokens and hashes, never a user table or HTTP. */
#include "auth.h"

#include <cJSON.h>
#include <crypt.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SP_JWT_MAX_LEN  8192               /* longer bearer tokens are refused unread */
#define SP_JWT_MAX_TIME 100000000000.0     /* NumericDate sanity bound (year ~5138) */
#define SP_JWT_MAX_SUB  9007199254740992.0 /* 2^53: integral doubles stay exact */
#define SP_PASSWORD_MAX 72                 /* bcrypt reads no further */
#define SP_BCRYPT_LEN   60                 /* "$2b$NN$" + 22 salt + 31 hash characters */
#define SP_BCRYPT_COST  12                 /* the dummy's cost until a real hash tells better */
#define SP_HASHER_MAX   64                 /* threads per pool */

/* Tail (salt + checksum) of a real cost-12 hash of a throw-away password: verifications of a
 * missing or malformed hash spend their bcrypt on it, so timing does not tell them apart. */
#define SP_DUMMY_TAIL "WqjQ7t0J6Xt2qqMbj9sr1uajcdfYTt9i4hyYC2drEMiiDvD4B7wia"

enum hash_kind { HASH_NEW, HASH_VERIFY };

/* One password job. Owned by the pool from queueing until its callback returns (or the pool is
 * freed); the password is wiped before the memory is freed. */
struct hash_job {
    struct hash_job *next;
    enum hash_kind kind;
    int cost; /* HASH_NEW: the cost; HASH_VERIFY: the dummy's cost */
    int ok, match;
    sp_hash_cb cb;
    void *arg;
    char password[SP_PASSWORD_MAX + 1];
    char hash[SP_BCRYPT_LEN + 1]; /* HASH_VERIFY: the stored hash, "" when missing/malformed */
    char result[256];             /* the new hash, or a message when !ok */
};

struct sp_hasher {
    struct event_base *base;
    struct event *wake; /* activated by the threads when done has jobs; never added */
    pthread_mutex_t mu; /* guards todo, done, stopping and dummy_cost */
    pthread_cond_t cv;  /* todo got a job, or stopping */
    struct hash_job *todo, *todo_tail;
    struct hash_job *done, *done_tail;
    int stopping;
    int dummy_cost;
    int nthreads; /* started and not yet joined */
    pthread_t *threads;
    int dispatching; /* loop thread: inside hasher_wake() */
    int freeing;     /* loop thread: sp_hasher_free() was called from a callback */
};

static int b64url_decode(const char *src, size_t n, char **out, size_t *outlen);
static int seg_valid(const char *s, size_t n);
static cJSON *seg_json(const char *s, size_t n);
static int jwt_conf_check(const struct sp_jwt_conf *conf, sp_err *err);
static int make_jti(char *out, size_t outlen, sp_err *err);
static int claim_time(const cJSON *payload, const char *name, long *out);
static int claim_sub(const cJSON *payload, int64_t *out);
static int pw_check(const char *password, size_t len, sp_err *err);
static int cost_check(int cost, sp_err *err);
static int bcrypt_cost_of(const char *hash);
static int pw_hash(const char *password, int cost, char *out, size_t outlen, sp_err *err);
static int pw_verify(const char *password, const char *hash, int dummy_cost);
static struct hash_job *
job_new(const char *password, size_t len, sp_hash_cb cb, void *arg, sp_err *err);
static void job_free(struct hash_job *job);
static void job_list_free(struct hash_job *job);
static int hasher_push(struct sp_hasher *h, struct hash_job *job, const char *hash, sp_err *err);
static void *hasher_main(void *arg);
static void hasher_wake(evutil_socket_t fd, short what, void *arg);
static void hasher_stop(struct sp_hasher *h);
static void hasher_destroy(struct sp_hasher *h);

/* ---- JWT ---------------------------------------------------------------- */

int sp_jwt_issue(const struct sp_jwt_conf *conf,
                 int64_t sub,
                 const char *role,
                 time_t now,
                 char **out,
                 sp_err *err)
{
    int rc = -1;
    jwt_t *jwt = NULL;
    char subs[24], jti[33];
    char *token;
    long iat = (long)now;

    if (jwt_conf_check(conf, err) != 0)
        goto done;
    if (out == NULL || sub < 1 || now < 0 || conf->lifetime_s <= 0) {
        sp_err_set(err, "bad token parameters");
        goto done;
    }
    if (role != NULL && strlen(role) >= sizeof(((struct sp_jwt_claims *)0)->role)) {
        sp_err_set(err, "role too long");
        goto done;
    }
    if (make_jti(jti, sizeof(jti), err) != 0)
        goto done;
    snprintf(subs, sizeof(subs), "%" PRId64, sub);
    if (jwt_new(&jwt) != 0) {
        jwt = NULL;
        sp_err_set(err, "out of memory");
        goto done;
    }
    if (jwt_add_grant(jwt, "sub", subs) != 0 ||
        (role != NULL && role[0] != '\0' && jwt_add_grant(jwt, "role", role) != 0) ||
        jwt_add_grant_int(jwt, "iat", iat) != 0 || jwt_add_grant_int(jwt, "nbf", iat) != 0 ||
        jwt_add_grant_int(jwt, "exp", iat + conf->lifetime_s) != 0 ||
        jwt_add_grant(jwt, "jti", jti) != 0 || jwt_add_grant(jwt, "type", "access") != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, conf->secret, (int)conf->secret_len) != 0) {
        sp_err_set(err, "cannot build the token");
        goto done;
    }
    if ((token = jwt_encode_str(jwt)) == NULL) {
        sp_err_set(err, "cannot encode the token");
        goto done;
    }
    *out = token; /* the caller's: free() */
    rc = 0;
done:
    if (jwt != NULL)
        jwt_free(jwt);
    return rc;
}

/* The clock's part of a token's checks (exp with the leeway, nbf): 0, or with err -2 when it
 * has expired (it will never pass again) and -1 when it is not valid yet. Apart from the
 * signature's, so that a cached token gets exactly these on each use. */
static int jwt_check_time(const struct sp_jwt_claims *c, const struct sp_jwt_conf *conf,
                          time_t now, sp_err *err)
{
    if (c->exp <= (long long)now - conf->leeway_s) {
        sp_err_set(err, "token expired");
        return -2;
    }
    if (c->nbf > (long long)now + conf->leeway_s) {
        sp_err_set(err, "token not yet valid");
        return -1;
    }
    return 0;
}

int sp_jwt_verify(const struct sp_jwt_conf *conf,
                  const char *token,
                  time_t now,
                  struct sp_jwt_claims *out,
                  sp_err *err)
{
    int rc = -1;
    size_t len, hlen, plen, slen;
    const char *dot1, *dot2;
    cJSON *header = NULL, *payload = NULL;
    const cJSON *v;
    jwt_t *jwt = NULL;
    struct sp_jwt_claims c;

    memset(&c, 0, sizeof(c));
    if (jwt_conf_check(conf, err) != 0)
        goto done;
    len = token != NULL ? strnlen(token, SP_JWT_MAX_LEN + 1) : 0;
    if (len == 0 || len > SP_JWT_MAX_LEN || (dot1 = memchr(token, '.', len)) == NULL ||
        (dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token))) == NULL) {
        sp_err_set(err, "malformed token");
        goto done;
    }
    hlen = (size_t)(dot1 - token);
    plen = (size_t)(dot2 - dot1 - 1);
    slen = len - hlen - plen - 2;
    if (!seg_valid(token, hlen) || !seg_valid(dot1 + 1, plen) ||
        (slen > 0 && !seg_valid(dot2 + 1, slen)) || (header = seg_json(token, hlen)) == NULL) {
        sp_err_set(err, "malformed token"); /* also a third dot: '.' is not base64url */
        goto done;
    }
    /* Pin the algorithm before libjwt sees the token: it would verify HS384/HS512 with our
     * secret, and this settles "none" whatever the library version does with it. */
    v = cJSON_GetObjectItemCaseSensitive(header, "alg");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "HS256") != 0) {
        sp_err_set(err, "algorithm not allowed");
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(header, "crit") != NULL) {
        sp_err_set(err, "unsupported critical header");
        goto done;
    }
    if (slen == 0) {
        sp_err_set(err, "bad signature");
        goto done;
    }
    if ((payload = seg_json(dot1 + 1, plen)) == NULL) {
        sp_err_set(err, "malformed token");
        goto done;
    }
    if (jwt_decode(&jwt, token, conf->secret, (int)conf->secret_len) != 0) {
        jwt = NULL;
        sp_err_set(err, "bad signature");
        goto done;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) { /* a header cJSON and jansson read differently */
        sp_err_set(err, "algorithm not allowed");
        goto done;
    }

    v = cJSON_GetObjectItemCaseSensitive(payload, "type");
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "access") != 0) {
        sp_err_set(err, "wrong token type");
        goto done;
    }
    if (claim_time(payload, "exp", &c.exp) != 0 || claim_time(payload, "nbf", &c.nbf) < 0 ||
        claim_time(payload, "iat", &c.iat) < 0) {
        sp_err_set(err, "malformed token"); /* exp is required, nbf and iat optional */
        goto done;
    }
    if (jwt_check_time(&c, conf, now, err) != 0)
        goto done;
    if (claim_sub(payload, &c.sub) != 0) {
        sp_err_set(err, "bad subject");
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(payload, "role");
    if (v != NULL && (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof(c.role))) {
        sp_err_set(err, "bad role");
        goto done;
    }
    if (v != NULL)
        strcpy(c.role, v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(payload, "jti");
    if (v != NULL && (!cJSON_IsString(v) || strlen(v->valuestring) >= sizeof(c.jti))) {
        sp_err_set(err, "bad jti");
        goto done;
    }
    if (v != NULL)
        strcpy(c.jti, v->valuestring);
    if (out != NULL)
        *out = c;
    rc = 0;
done:
    if (jwt != NULL)
        jwt_free(jwt);
    cJSON_Delete(header);
    cJSON_Delete(payload);
    return rc;
}

static int jwt_conf_check(const struct sp_jwt_conf *conf, sp_err *err)
{
    if (conf == NULL || conf->secret == NULL || conf->secret_len == 0 ||
        conf->secret_len > INT_MAX || conf->leeway_s < 0) {
        sp_err_set(err, "no usable jwt secret");
        return -1;
    }
    return 0;
}

/* 1 when s[0..n) is non-empty unpadded base64url. */
static int seg_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n % 4 == 1)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return 0;
    }
    return 1;
}

/* Decodes unpadded base64url; *out is NUL-terminated and the caller's (free()). */
static int b64url_decode(const char *src, size_t n, char **out, size_t *outlen)
{
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    uint32_t acc = 0;
    size_t i, o = 0;
    int bits = 0;

    if (buf == NULL || !seg_valid(src, n)) {
        free(buf);
        return -1;
    }
    for (i = 0; i < n; i++) {
        char ch = src[i];
        uint32_t d = ch >= 'A' && ch <= 'Z'   ? (uint32_t)(ch - 'A')
                     : ch >= 'a' && ch <= 'z' ? (uint32_t)(ch - 'a' + 26)
                     : ch >= '0' && ch <= '9' ? (uint32_t)(ch - '0' + 52)
                     : ch == '-'              ? 62u
                                              : 63u;
        acc = (acc << 6) | d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    buf[o] = '\0';
    *out = (char *)buf;
    *outlen = o;
    return 0;
}

/* A segment decoded and parsed; a JSON object or NULL. The caller frees with cJSON_Delete(). */
static cJSON *seg_json(const char *s, size_t n)
{
    char *text = NULL;
    size_t len;
    cJSON *json = NULL;

    if (b64url_decode(s, n, &text, &len) != 0)
        goto done;
    if (memchr(text, '\0', len) != NULL) /* cJSON would stop there and take a prefix */
        goto done;
    json = cJSON_ParseWithOpts(text, NULL, 1);
    if (json != NULL && !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        json = NULL;
    }
done:
    free(text);
    return json;
}

/* 128 random bits as 32 hex digits. */
static int make_jti(char *out, size_t outlen, sp_err *err)
{
    unsigned char raw[16];
    size_t i;

    if (outlen < 2 * sizeof(raw) + 1 || RAND_bytes(raw, (int)sizeof(raw)) != 1) {
        sp_err_set(err, "no randomness for the token id");
        return -1;
    }
    for (i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* A NumericDate claim: 0 with *out set, 1 when absent (*out untouched), -1 when not sane. */
static int claim_time(const cJSON *payload, const char *name, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, name);

    if (v == NULL)
        return 1;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= SP_JWT_MAX_TIME))
        return -1; /* also NaN, and the inf strtod makes of 1e999 */
    *out = (long)v->valuedouble;
    return 0;
}

/* sub: a decimal string (what we and the old deployment issue) or an integer, >= 1. */
static int claim_sub(const cJSON *payload, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, "sub");
    const char *s;
    long long n;
    char *end;

    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!(d >= 1 && d <= SP_JWT_MAX_SUB) || d != (double)(int64_t)d)
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    if (!cJSON_IsString(v))
        return -1;
    s = v->valuestring;
    if (s[0] < '0' || s[0] > '9' || strlen(s) > 19 || strspn(s, "0123456789") != strlen(s))
        return -1;
    errno = 0;
    n = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || n < 1)
        return -1;
    *out = (int64_t)n;
    return 0;
}

/* ---- verified tokens: a worker's cache ---------------------------------------------- */

/* A token the worker has verified, keyed by its exact bytes. Everything sp_jwt_verify()
 * decides but the clock (signature, algorithm, type, sub, role, jti) is a function of those
 * bytes and the secret: a hit skips it, and checks exp and nbf against now as a miss would.
 * A token that failed is never kept. Slots are reused CLOCK-wise (a hit sets ref). */
struct jwt_entry {
    char *token; /* NULL: a free slot */
    size_t len;
    uint64_t hash;
    int32_t next; /* the bucket's chain, -1 at its end */
    unsigned char ref;
    struct sp_jwt_claims claims;
};

struct sp_jwt_cache {
    struct jwt_entry *e;
    size_t cap, n, hand;
    int32_t *bucket;
    uint32_t mask;
    uint64_t seed;
    unsigned char *secret; /* the secret the entries were verified with */
    size_t secret_len;
    uint64_t hits, misses;
};

static uint64_t jwt_hash(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull), w;

    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    if (n > 0) {
        w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 32);
}

struct sp_jwt_cache *sp_jwt_cache_new(size_t capacity)
{
    struct sp_jwt_cache *c;
    size_t nb = 16, i;

    if (capacity == 0 || capacity > SP_JWT_CACHE_MAX)
        return NULL;
    while (nb < 2 * capacity)
        nb *= 2;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->cap = capacity;
    c->mask = (uint32_t)(nb - 1);
    c->e = calloc(capacity, sizeof(*c->e));
    c->bucket = malloc(nb * sizeof(*c->bucket));
    if (c->e == NULL || c->bucket == NULL) {
        sp_jwt_cache_free(c);
        return NULL;
    }
    for (i = 0; i < nb; i++)
        c->bucket[i] = -1;
    if (RAND_bytes((unsigned char *)&c->seed, (int)sizeof(c->seed)) != 1)
        c->seed = (uint64_t)(uintptr_t)c ^ (uint64_t)time(NULL);
    return c;
}

/* Drops slot i (in use) from its chain and frees its token. */
static void jwt_cache_drop(struct sp_jwt_cache *c, size_t i)
{
    struct jwt_entry *e = &c->e[i];
    int32_t *link = &c->bucket[e->hash & c->mask];

    while (*link != (int32_t)i)
        link = &c->e[*link].next;
    *link = e->next;
    free(e->token);
    e->token = NULL;
    e->ref = 0;
    c->n--;
}

static void jwt_cache_flush(struct sp_jwt_cache *c)
{
    size_t i;

    for (i = 0; i < c->cap; i++)
        if (c->e[i].token != NULL)
            jwt_cache_drop(c, i);
    c->hand = 0;
}

void sp_jwt_cache_free(struct sp_jwt_cache *c)
{
    if (c == NULL)
        return;
    if (c->e != NULL && c->bucket != NULL)
        jwt_cache_flush(c);
    if (c->secret != NULL) {
        OPENSSL_cleanse(c->secret, c->secret_len);
        free(c->secret);
    }
    free(c->e);
    free(c->bucket);
    free(c);
}

/* The secret the entries speak for is conf's; when it changed, the entries go. */
static int jwt_cache_secret(struct sp_jwt_cache *c, const struct sp_jwt_conf *conf)
{
    if (c->secret != NULL && c->secret_len == conf->secret_len &&
        memcmp(c->secret, conf->secret, conf->secret_len) == 0)
        return 0;
    jwt_cache_flush(c);
    if (c->secret != NULL) {
        OPENSSL_cleanse(c->secret, c->secret_len);
        free(c->secret);
    }
    c->secret_len = 0;
    if ((c->secret = malloc(conf->secret_len)) == NULL)
        return -1;
    memcpy(c->secret, conf->secret, conf->secret_len);
    c->secret_len = conf->secret_len;
    return 0;
}

/* Keeps a verified token, in a free slot or the first CLOCK finds unused since its last turn. */
static void jwt_cache_put(struct sp_jwt_cache *c,
                          const char *token,
                          size_t len,
                          uint64_t hash,
                          const struct sp_jwt_claims *claims)
{
    struct jwt_entry *e;
    char *copy = malloc(len + 1);
    size_t i;

    if (copy == NULL)
        return; /* not kept: the next request verifies again */
    memcpy(copy, token, len);
    copy[len] = '\0';
    for (;;) {
        i = c->hand;
        c->hand = (c->hand + 1) % c->cap;
        e = &c->e[i];
        if (e->token == NULL)
            break;
        if (!e->ref) {
            jwt_cache_drop(c, i);
            break;
        }
        e->ref = 0;
    }
    e->token = copy;
    e->len = len;
    e->hash = hash;
    e->ref = 0;
    e->claims = *claims;
    e->next = c->bucket[hash & c->mask];
    c->bucket[hash & c->mask] = (int32_t)i;
    c->n++;
}

int sp_jwt_verify_cached(struct sp_jwt_cache *c,
                         const struct sp_jwt_conf *conf,
                         const char *token,
                         time_t now,
                         struct sp_jwt_claims *out,
                         sp_err *err)
{
    struct sp_jwt_claims claims;
    size_t len;
    uint64_t hash;
    int32_t i;

    if (c == NULL || jwt_conf_check(conf, err) != 0 || token == NULL)
        return sp_jwt_verify(conf, token, now, out, err);
    len = strnlen(token, SP_JWT_CACHE_MAX_TOKEN + 1);
    if (len == 0 || len > SP_JWT_CACHE_MAX_TOKEN || jwt_cache_secret(c, conf) != 0)
        return sp_jwt_verify(conf, token, now, out, err);
    hash = jwt_hash(c->seed, token, len);
    for (i = c->bucket[hash & c->mask]; i >= 0; i = c->e[i].next) {
        struct jwt_entry *e = &c->e[i];
        /* compared only when its seeded hash matches: no timing tells a probe anything */
        if (e->hash != hash || e->len != len || memcmp(e->token, token, len) != 0)
            continue;
        int rc = jwt_check_time(&e->claims, conf, now, err);
        if (rc != 0) {
            if (rc == -2)
                jwt_cache_drop(c, (size_t)i); /* expired: it will never pass again */
            return -1;
        }
        e->ref = 1;
        c->hits++;
        if (out != NULL)
            *out = e->claims;
        return 0;
    }
    c->misses++;
    if (sp_jwt_verify(conf, token, now, &claims, err) != 0)
        return -1;
    jwt_cache_put(c, token, len, hash, &claims);
    if (out != NULL)
        *out = claims;
    return 0;
}

void sp_jwt_cache_stats(const struct sp_jwt_cache *c,
                        uint64_t *hits,
                        uint64_t *misses,
                        size_t *size)
{
    *hits = c != NULL ? c->hits : 0;
    *misses = c != NULL ? c->misses : 0;
    *size = c != NULL ? c->n : 0;
}

/* ---- passwords: the bcrypt calls both paths share ------------------------------------ */

static int pw_check(const char *password, size_t len, sp_err *err)
{
    if (password == NULL) {
        sp_err_set(err, "no password");
        return -1;
    }
    if (len > SP_PASSWORD_MAX) {
        sp_err_set(err, "password longer than %d bytes", SP_PASSWORD_MAX);
        return -1;
    }
    if (memchr(password, '\0', len) != NULL) {
        sp_err_set(err, "password contains a nul byte");
        return -1;
    }
    return 0;
}

static int cost_check(int cost, sp_err *err)
{
    if (cost < 4 || cost > 31) {
        sp_err_set(err, "bcrypt cost must be 4 to 31");
        return -1;
    }
    return 0;
}

/* The cost of a well-formed "$2a$", "$2b$" or "$2y$" hash, or -1. Anything else must not reach
 * crypt(): it would happily run DES or MD5 on it. */
static int bcrypt_cost_of(const char *hash)
{
    static const char alphabet[] =
        "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    int cost;

    if (hash == NULL || strnlen(hash, SP_BCRYPT_LEN + 1) != SP_BCRYPT_LEN || hash[0] != '$' ||
        hash[1] != '2' || (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y') || hash[3] != '$' ||
        hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' || hash[6] != '$' ||
        strspn(hash + 7, alphabet) != SP_BCRYPT_LEN - 7)
        return -1;
    cost = (hash[4] - '0') * 10 + (hash[5] - '0');
    return cost >= 4 && cost <= 31 ? cost : -1;
}

/* password is NUL-terminated and checked; the new "$2b$" hash goes to out. */
static int pw_hash(const char *password, int cost, char *out, size_t outlen, sp_err *err)
{
    int rc = -1;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd)); /* 32 KiB: not on a thread's stack */
    const char *h;

    if (cd == NULL) {
        sp_err_set(err, "out of memory");
        goto done;
    }
    if (crypt_gensalt_rn("$2b$", (unsigned long)cost, NULL, 0, salt, (int)sizeof(salt)) == NULL) {
        sp_err_set(err, "cannot make a bcrypt salt: %s", strerror(errno));
        goto done;
    }
    h = crypt_rn(password, salt, cd, (int)sizeof(*cd));
    if (h == NULL || h[0] == '*' || bcrypt_cost_of(h) != cost) {
        sp_err_set(err, "bcrypt failed");
        goto done;
    }
    if (strlen(h) >= outlen) {
        sp_err_set(err, "hash buffer too small");
        goto done;
    }
    strcpy(out, h);
    rc = 0;
done:
    if (cd != NULL) {
        OPENSSL_cleanse(cd, sizeof(*cd));
        free(cd);
    }
    return rc;
}

/* 1 match, 0 not (always 0 for a missing or malformed hash, after the same bcrypt work on a
 * dummy), -1 when bcrypt failed on a well-formed hash. password is NUL-terminated. */
static int pw_verify(const char *password, const char *hash, int dummy_cost)
{
    int rc = -1, real = bcrypt_cost_of(hash) >= 0, same;
    char dummy[96];
    const char *want = hash, *got;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    size_t n;

    if (cd == NULL)
        goto done;
    if (!real) {
        if (dummy_cost < 4 || dummy_cost > 31)
            dummy_cost = SP_BCRYPT_COST;
        snprintf(dummy, sizeof(dummy), "$2b$%02d$%s", dummy_cost, SP_DUMMY_TAIL);
        want = dummy;
    }
    got = crypt_rn(password, want, cd, (int)sizeof(*cd));
    if (got == NULL || got[0] == '*') {
        rc = real ? -1 : 0;
        goto done;
    }
    n = strlen(want);
    same = strlen(got) == n && CRYPTO_memcmp(got, want, n) == 0;
    rc = real ? same : 0;
done:
    if (cd != NULL) {
        OPENSSL_cleanse(cd, sizeof(*cd));
        free(cd);
    }
    return rc;
}

int sp_password_hash(
    const char *password, size_t len, int cost, char *out, size_t outlen, sp_err *err)
{
    int rc = -1;
    char pw[SP_PASSWORD_MAX + 1];

    if (pw_check(password, len, err) != 0 || cost_check(cost, err) != 0)
        return -1;
    if (out == NULL) {
        sp_err_set(err, "no output buffer");
        return -1;
    }
    memcpy(pw, password, len);
    pw[len] = '\0';
    rc = pw_hash(pw, cost, out, outlen, err);
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc;
}

int sp_password_verify(const char *password, size_t len, const char *hash)
{
    int rc;
    char pw[SP_PASSWORD_MAX + 1];

    if (pw_check(password, len, NULL) != 0)
        return 0;
    memcpy(pw, password, len);
    pw[len] = '\0';
    rc = pw_verify(pw, hash, SP_BCRYPT_COST);
    OPENSSL_cleanse(pw, sizeof(pw));
    return rc == 1;
}

/* ---- the pool ------------------------------------------------------------------------ */

struct sp_hasher *sp_hasher_new(struct event_base *base, int threads, sp_err *err)
{
    struct sp_hasher *h = NULL;
    sigset_t all, old;
    int i, e = 0;

    if (base == NULL || threads < 1 || threads > SP_HASHER_MAX) {
        sp_err_set(err, "hasher: need a loop and 1 to %d threads", SP_HASHER_MAX);
        return NULL;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        sp_err_set(err, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        sp_err_set(err, "hasher: cannot create a mutex");
        return NULL;
    }
    if (pthread_cond_init(&h->cv, NULL) != 0) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        sp_err_set(err, "hasher: cannot create a condition variable");
        return NULL;
    }
    /* From here on sp_hasher_free() undoes whatever was done. */
    h->base = base;
    h->dummy_cost = SP_BCRYPT_COST;
    h->wake = event_new(base, -1, EV_PERSIST, hasher_wake, h);
    h->threads = calloc((size_t)threads, sizeof(*h->threads));
    if (h->wake == NULL || h->threads == NULL) {
        sp_err_set(err, "out of memory");
        goto fail;
    }
    /* The threads start with every signal blocked: signals are the loop's business. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < threads; i++) {
        if ((e = pthread_create(&h->threads[i], NULL, hasher_main, h)) != 0)
            break;
        h->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (h->nthreads < threads) {
        sp_err_set(err, "hasher: cannot start a thread: %s", strerror(e));
        goto fail;
    }
    return h; /* the caller's: sp_hasher_free() */
fail:
    sp_hasher_free(h);
    return NULL;
}

void sp_hasher_free(struct sp_hasher *h)
{
    if (h == NULL)
        return;
    hasher_stop(h);
    if (h->dispatching) {
        h->freeing = 1; /* called from a callback: hasher_wake() finishes the job */
        return;
    }
    hasher_destroy(h);
}

int sp_hasher_hash(struct sp_hasher *h,
                   const char *password,
                   size_t len,
                   int cost,
                   sp_hash_cb cb,
                   void *arg,
                   sp_err *err)
{
    struct hash_job *job;

    if (h == NULL || cost_check(cost, err) != 0 ||
        (job = job_new(password, len, cb, arg, err)) == NULL)
        return -1;
    job->kind = HASH_NEW;
    job->cost = cost;
    return hasher_push(h, job, NULL, err);
}

int sp_hasher_verify(struct sp_hasher *h,
                     const char *password,
                     size_t len,
                     const char *hash,
                     sp_hash_cb cb,
                     void *arg,
                     sp_err *err)
{
    struct hash_job *job;

    if (h == NULL || (job = job_new(password, len, cb, arg, err)) == NULL)
        return -1;
    job->kind = HASH_VERIFY;
    if (bcrypt_cost_of(hash) >= 0)
        strcpy(job->hash, hash); /* else "" and a dummy is spent */
    return hasher_push(h, job, hash, err);
}

int sp_hasher_cancel(struct sp_hasher *h, void *arg)
{
    struct hash_job **pp, *job, *dropped = NULL;
    int n = 0;

    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->mu);
    h->todo_tail = NULL;
    for (pp = &h->todo; (job = *pp) != NULL;) {
        if (job->arg == arg) {
            *pp = job->next;
            job->next = dropped;
            dropped = job;
            n++;
        } else {
            h->todo_tail = job;
            pp = &job->next;
        }
    }
    pthread_mutex_unlock(&h->mu);
    job_list_free(dropped);
    return n;
}

static struct hash_job *
job_new(const char *password, size_t len, sp_hash_cb cb, void *arg, sp_err *err)
{
    struct hash_job *job;

    if (cb == NULL) {
        sp_err_set(err, "hasher: no callback");
        return NULL;
    }
    if (pw_check(password, len, err) != 0)
        return NULL;
    if ((job = calloc(1, sizeof(*job))) == NULL) {
        sp_err_set(err, "out of memory");
        return NULL;
    }
    memcpy(job->password, password, len);
    job->cb = cb;
    job->arg = arg;
    return job;
}

static void job_free(struct hash_job *job)
{
    if (job == NULL)
        return;
    OPENSSL_cleanse(job, sizeof(*job));
    free(job);
}

static void job_list_free(struct hash_job *job)
{
    while (job != NULL) {
        struct hash_job *next = job->next;
        job_free(job);
        job = next;
    }
}

/* Queues job (now the pool's, even on failure). The dummy cost follows the costs seen: a
 * new hash's, or a verified well-formed hash's. */
static int hasher_push(struct sp_hasher *h, struct hash_job *job, const char *hash, sp_err *err)
{
    int rc = -1, cost = job->kind == HASH_NEW ? job->cost : bcrypt_cost_of(hash);

    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        sp_err_set(err, "hasher: stopping");
        goto done;
    }
    if (cost > 0)
        h->dummy_cost = cost;
    if (job->kind == HASH_VERIFY)
        job->cost = h->dummy_cost;
    if (h->todo_tail != NULL)
        h->todo_tail->next = job;
    else
        h->todo = job;
    h->todo_tail = job;
    job = NULL;
    pthread_cond_signal(&h->cv);
    rc = 0;
done:
    pthread_mutex_unlock(&h->mu);
    job_free(job); /* NULL once queued */
    return rc;
}

static void *hasher_main(void *arg)
{
    struct sp_hasher *h = arg;
    struct hash_job *job;
    sp_err err;
    int r;

    /* Hashing yields the cores to the event loops: a flood of logins slows logins, not every
     * other request. In the idle class a thread runs only on time nothing else wants, and a
     * loop that wakes takes the core from it at once (a nice thread keeps the core for the
     * rest of its slice). Where that class is refused, a nice value of its own (Linux). */
    const struct sched_param idle = {.sched_priority = 0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle) != 0 &&
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        (void)0; /* neither allowed here: hash at the worker's priority */

    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (!h->stopping && h->todo == NULL)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stopping) { /* queued jobs stay for sp_hasher_free() to drop */
            pthread_mutex_unlock(&h->mu);
            break;
        }
        job = h->todo;
        if ((h->todo = job->next) == NULL)
            h->todo_tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&h->mu);

        if (job->kind == HASH_NEW) {
            job->ok =
                pw_hash(job->password, job->cost, job->result, sizeof(job->result), &err) == 0;
            if (!job->ok)
                snprintf(job->result, sizeof(job->result), "%s", err.msg);
        } else {
            r = pw_verify(job->password, job->hash, job->cost);
            job->ok = r >= 0;
            job->match = r == 1;
            if (!job->ok)
                snprintf(job->result, sizeof(job->result), "bcrypt failed");
        }
        OPENSSL_cleanse(job->password, sizeof(job->password));

        pthread_mutex_lock(&h->mu);
        if (h->done_tail != NULL)
            h->done_tail->next = job;
        else
            h->done = job;
        h->done_tail = job;
        pthread_mutex_unlock(&h->mu);
        event_active(h->wake, EV_READ, 0); /* thread-safe: evthread_use_pthreads() */
    }
    return NULL;
}

/* Loop thread: calls back the finished jobs, one at a time so that a callback may free the
 * pool (the rest are then dropped). */
static void hasher_wake(evutil_socket_t fd, short what, void *arg)
{
    struct sp_hasher *h = arg;
    struct hash_job *job;

    SP_UNUSED(fd);
    SP_UNUSED(what);
    h->dispatching = 1;
    while (!h->freeing) {
        pthread_mutex_lock(&h->mu);
        if ((job = h->done) != NULL && (h->done = job->next) == NULL)
            h->done_tail = NULL;
        pthread_mutex_unlock(&h->mu);
        if (job == NULL)
            break;
        job->cb(job->arg, job->ok, job->match, job->result);
        job_free(job);
    }
    h->dispatching = 0;
    if (h->freeing)
        hasher_destroy(h);
}

/* Stops and joins the threads; each finishes the job in hand first. Idempotent. */
static void hasher_stop(struct sp_hasher *h)
{
    int i;

    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    for (i = 0; i < h->nthreads; i++)
        pthread_join(h->threads[i], NULL);
    h->nthreads = 0;
}

/* After hasher_stop(): drops the queued and finished jobs uncalled, frees everything. */
static void hasher_destroy(struct sp_hasher *h)
{
    if (h->wake != NULL)
        event_free(h->wake);
    job_list_free(h->todo);
    job_list_free(h->done);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h->threads);
    free(h);
}
