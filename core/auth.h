/* auth.h: JWT (HS256, libjwt) and bcrypt password hashing off the event loop.
 * Knows tokens and hashes, never a user table. */
#ifndef SP_AUTH_H
#define SP_AUTH_H

#include <stdint.h>
#include <time.h>

#include "sp.h"

struct event_base;

/* ---- JWT ---------------------------------------------------------------- */

struct sp_jwt_conf {
    const unsigned char *secret;
    size_t secret_len;
    long lifetime_s; /* exp = iat + lifetime */
    long leeway_s;   /* tolerated clock skew for exp and nbf */
};

struct sp_jwt_claims {
    int64_t sub;    /* user id (the token carries it as a decimal string; a number is accepted) */
    char role[32];  /* "" when the token has no role claim (tokens of the old deployment) */
    char jti[64];
    long iat, nbf, exp;
};

/* Issue an access token: sub, role, iat, nbf, exp, jti (random), type = "access".
 * On success *out is the caller's, to free with free(). */
int sp_jwt_issue(const struct sp_jwt_conf *conf, int64_t sub, const char *role, time_t now,
                 char **out, sp_err *err);

/* Verify: HS256 only (none/HS384/HS512/RS256... are refused), signature, exp and nbf with leeway,
 * type == "access", sub present. Returns 0 and fills *out, or -1 with a reason in err. */
int sp_jwt_verify(const struct sp_jwt_conf *conf, const char *token, time_t now,
                  struct sp_jwt_claims *out, sp_err *err);

/* A worker's cache of verified tokens: a token seen again is not decoded, parsed and its
 * HMAC computed again; exp and nbf are still checked against the clock on every call. Keyed
 * by the token's exact bytes (a hash, then a full comparison), for one secret (a different
 * one empties it), at most capacity tokens (a slot unused since CLOCK's last turn is reused).
 * A token that fails verification is never kept. One thread only. */
#define SP_JWT_CACHE_SIZE      4096   /* tokens a worker keeps */
#define SP_JWT_CACHE_MAX       1000000
#define SP_JWT_CACHE_MAX_TOKEN 2048   /* longer tokens are verified every time */

struct sp_jwt_cache;

/* NULL when out of memory or capacity is 0 or too large; free with sp_jwt_cache_free(). */
struct sp_jwt_cache *sp_jwt_cache_new(size_t capacity);
void sp_jwt_cache_free(struct sp_jwt_cache *cache); /* NULL is fine */

/* As sp_jwt_verify(), same answers and reasons; cache NULL verifies every time. */
int sp_jwt_verify_cached(struct sp_jwt_cache *cache, const struct sp_jwt_conf *conf,
                         const char *token, time_t now, struct sp_jwt_claims *out, sp_err *err);
void sp_jwt_cache_stats(const struct sp_jwt_cache *cache, uint64_t *hits, uint64_t *misses,
                        size_t *size);

/* ---- passwords ------------------------------------------------------------ */

struct sp_hasher;

/* A small thread pool for bcrypt; results come back on base's loop (base must be created after
 * evthread_use_pthreads()). Caller frees with sp_hasher_free(), which joins the threads (jobs in
 * hand are finished, queued ones dropped; none is called back). */
struct sp_hasher *sp_hasher_new(struct event_base *base, int threads, sp_err *err);
void sp_hasher_free(struct sp_hasher *h);

/* hash: ok = 1 and result = the new "$2b$..." hash; verify: ok = 1 and match = 0/1.
 * ok = 0 on failure (result then holds a message). result is valid during the callback. */
typedef void (*sp_hash_cb)(void *arg, int ok, int match, const char *result);

/* Both copy their inputs, return 0 when queued (cb runs later on the loop) or -1 (err). */
int sp_hasher_hash(struct sp_hasher *h, const char *password, size_t len, int cost, sp_hash_cb cb,
                   void *arg, sp_err *err);
/* hash may be NULL or malformed: a dummy verification is still spent, then match = 0,
 * so timing does not tell whether an account exists. Accepts $2a$, $2b$, $2y$. */
int sp_hasher_verify(struct sp_hasher *h, const char *password, size_t len, const char *hash,
                     sp_hash_cb cb, void *arg, sp_err *err);

/* Drops the queued jobs whose arg is arg: their callbacks will never run. Returns how many.
 * A job already being hashed still calls back when done (bcrypt cannot be interrupted). */
int sp_hasher_cancel(struct sp_hasher *h, void *arg);

/* Blocking versions for the command line (never on a loop). */
int sp_password_hash(const char *password, size_t len, int cost, char *out, size_t outlen,
                     sp_err *err);
int sp_password_verify(const char *password, size_t len, const char *hash); /* 1 match, 0 not */

#endif
