/* test_auth.c: core/auth.c: JWT issue/verify (algorithm pinning, times, claims, old deployment
 * tokens) and bcrypt (blocking, fixtures from Python's bcrypt, the pool on a real loop).
 * Run from the repository root: reads tests/fixtures/bcrypt_hashes.txt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <crypt.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

#define T0       1700000000L
#define LIFETIME 900L
#define LEEWAY   30L
#define FIXTURES "tests/fixtures/bcrypt_hashes.txt"

static const char secret[] = "0123456789abcdef0123456789abcdef-spacer-unit";
static const struct sp_jwt_conf conf = {(const unsigned char *)secret, sizeof(secret) - 1, LIFETIME,
                                        LEEWAY};

/* ---- helpers ------------------------------------------------------------- */

/* Unpadded base64url of p[0..n); the caller frees. */
static char *b64url(const void *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    size_t i;
    int len;

    assert_non_null(s);
    len = EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    while (len > 0 && s[len - 1] == '=')
        len--;
    s[len] = '\0';
    for (i = 0; s[i] != '\0'; i++)
        s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    return s;
}

/* Decodes the unpadded base64url segment s[0..n) as text; the caller frees. */
static char *unb64url(const char *s, size_t n)
{
    char *std = calloc(1, n + 4), *out = calloc(1, n + 4);
    size_t i;

    assert_non_null(std);
    assert_non_null(out);
    for (i = 0; i < n; i++)
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (i % 4 != 0)
        std[i++] = '=';
    assert_true(EVP_DecodeBlock((unsigned char *)out, (unsigned char *)std, (int)i) >= 0);
    free(std);
    return out;
}

/* header.payload.signature, the signature an HMAC with md over key (md NULL: empty). */
static char *make_token(const char *header, const char *payload, const EVP_MD *md, const char *key)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload)), *s, *tok;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t n;

    n = strlen(h) + strlen(p) + 2;
    tok = malloc(n + 2 * EVP_MAX_MD_SIZE);
    assert_non_null(tok);
    snprintf(tok, n, "%s.%s", h, p);
    if (md != NULL)
        assert_non_null(
            HMAC(md, key, (int)strlen(key), (unsigned char *)tok, strlen(tok), mac, &maclen));
    s = b64url(mac, maclen);
    strcat(tok, ".");
    strcat(tok, s);
    free(h);
    free(p);
    free(s);
    return tok;
}

static char *std_payload(const char *type)
{
    static char buf[512];

    snprintf(buf, sizeof(buf),
             "{\"sub\":\"7\",\"role\":\"customer\",\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,"
             "\"jti\":\"abc\",\"type\":\"%s\"}",
             T0, T0, T0 + LIFETIME, type);
    return buf;
}

static const char hs256_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Verifies tok at now and expects a refusal saying want (want NULL: any reason). */
static void expect_refused(const char *tok, time_t now, const char *want)
{
    struct sp_jwt_claims c;
    sp_err err = {{0}};

    assert_int_equal(sp_jwt_verify(&conf, tok, now, &c, &err), -1);
    assert_true(err.msg[0] != '\0');
    if (want != NULL)
        assert_string_equal(err.msg, want);
}

/* ---- JWT ----------------------------------------------------------------- */

static void test_jwt_round_trip(void **state)
{
    char *tok = NULL, *dot1, *dot2, *text;
    struct sp_jwt_claims c;
    sp_err err = {{0}};
    size_t i;

    (void)state;
    assert_int_equal(sp_jwt_issue(&conf, 42, "admin", T0, &tok, &err), 0);
    assert_non_null(tok);
    assert_int_equal(sp_jwt_verify(&conf, tok, T0 + 10, &c, &err), 0);
    assert_int_equal(c.sub, 42);
    assert_string_equal(c.role, "admin");
    assert_int_equal(c.iat, T0);
    assert_int_equal(c.nbf, T0);
    assert_int_equal(c.exp, T0 + LIFETIME);
    assert_int_equal(strlen(c.jti), 32);
    for (i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", c.jti[i]));

    /* On the wire: header alg HS256 typ JWT; sub a string, type access. */
    dot1 = strchr(tok, '.');
    dot2 = strchr(dot1 + 1, '.');
    text = unb64url(tok, (size_t)(dot1 - tok));
    assert_non_null(strstr(text, "\"alg\":\"HS256\""));
    assert_non_null(strstr(text, "\"typ\":\"JWT\""));
    free(text);
    text = unb64url(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    assert_non_null(strstr(text, "\"sub\":\"42\""));
    assert_non_null(strstr(text, "\"type\":\"access\""));
    assert_non_null(strstr(text, "\"role\":\"admin\""));
    free(text);
    free(tok);
}

static void test_jwt_unique_jti_and_no_role(void **state)
{
    char *a = NULL, *b = NULL;
    struct sp_jwt_claims ca, cb;
    sp_err err = {{0}};

    (void)state;
    assert_int_equal(sp_jwt_issue(&conf, 5, NULL, T0, &a, &err), 0);
    assert_int_equal(sp_jwt_issue(&conf, 5, NULL, T0, &b, &err), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(sp_jwt_verify(&conf, a, T0, &ca, &err), 0);
    assert_int_equal(sp_jwt_verify(&conf, b, T0, &cb, &err), 0);
    assert_string_not_equal(ca.jti, cb.jti);
    assert_string_equal(ca.role, "");
    free(a);
    free(b);
}

static void test_jwt_issue_refuses(void **state)
{
    struct sp_jwt_conf bad = conf;
    char *tok = NULL;
    sp_err err = {{0}};

    (void)state;
    assert_int_equal(sp_jwt_issue(&conf, 0, "x", T0, &tok, &err), -1);
    assert_int_equal(
        sp_jwt_issue(&conf, 1, "a-role-name-that-is-far-too-long-to-fit", T0, &tok, &err), -1);
    bad.secret_len = 0;
    assert_int_equal(sp_jwt_issue(&bad, 1, "x", T0, &tok, &err), -1);
    bad = conf;
    bad.lifetime_s = 0;
    assert_int_equal(sp_jwt_issue(&bad, 1, "x", T0, &tok, &err), -1);
    assert_null(tok);
}

static void test_jwt_expiry_and_leeway(void **state)
{
    char *tok = NULL;
    struct sp_jwt_claims c;
    sp_err err = {{0}};
    const long exp = T0 + LIFETIME;

    (void)state;
    assert_int_equal(sp_jwt_issue(&conf, 9, "customer", T0, &tok, &err), 0);
    assert_int_equal(sp_jwt_verify(&conf, tok, exp - 1, &c, &err), 0);
    assert_int_equal(sp_jwt_verify(&conf, tok, exp + LEEWAY - 1, &c, &err), 0); /* in leeway */
    expect_refused(tok, exp + LEEWAY, "token expired");
    expect_refused(tok, exp + LEEWAY + 1, "token expired");
    expect_refused(tok, exp + 86400, "token expired");
    /* nbf = iat: early within the leeway is fine, earlier is not */
    assert_int_equal(sp_jwt_verify(&conf, tok, T0 - LEEWAY, &c, &err), 0);
    expect_refused(tok, T0 - LEEWAY - 1, "token not yet valid");
    free(tok);
}

static void test_jwt_nbf_future(void **state)
{
    char payload[256], *tok;

    (void)state;
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"7\",\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,\"type\":\"access\"}", T0,
             T0 + 3600, T0 + 7200);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    expect_refused(tok, T0, "token not yet valid");
    free(tok);
}

static void test_jwt_other_secret(void **state)
{
    struct sp_jwt_conf other = {(const unsigned char *)"another-secret-another-secret-xx", 32,
                                LIFETIME, LEEWAY};
    char *tok = NULL;
    sp_err err = {{0}};

    (void)state;
    assert_int_equal(sp_jwt_issue(&other, 1, "admin", T0, &tok, &err), 0);
    expect_refused(tok, T0, "bad signature");
    free(tok);
}

static void test_jwt_alg_none(void **state)
{
    char *tok;
    char *noalg;

    (void)state;
    /* header.payload. with an empty signature */
    tok = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", std_payload("access"), NULL, NULL);
    assert_int_equal(tok[strlen(tok) - 1], '.');
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    /* none with a valid HMAC appended, and other spellings */
    tok = make_token("{\"alg\":\"none\"}", std_payload("access"), EVP_sha256(), secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    tok = make_token("{\"alg\":\"None\",\"typ\":\"JWT\"}", std_payload("access"), NULL, NULL);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    tok = make_token("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", std_payload("access"), EVP_sha256(),
                     secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    noalg = make_token("{\"typ\":\"JWT\"}", std_payload("access"), EVP_sha256(), secret);
    expect_refused(noalg, T0, "algorithm not allowed");
    free(noalg);
}

static void test_jwt_hs512_same_secret(void **state)
{
    char *tok;

    (void)state;
    tok = make_token("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", std_payload("access"), EVP_sha512(),
                     secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    tok = make_token("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", std_payload("access"), EVP_sha384(),
                     secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    /* duplicate keys: cJSON takes the first "alg", jansson (libjwt) the last */
    tok = make_token("{\"alg\":\"HS256\",\"alg\":\"HS512\",\"typ\":\"JWT\"}", std_payload("access"),
                     EVP_sha512(), secret);
    expect_refused(tok, T0, NULL);
    free(tok);
    tok = make_token("{\"alg\":\"HS512\",\"alg\":\"HS256\",\"typ\":\"JWT\"}", std_payload("access"),
                     EVP_sha256(), secret);
    expect_refused(tok, T0, NULL);
    free(tok);
}

static void test_jwt_rs256_label(void **state)
{
    char *tok;

    (void)state;
    tok = make_token("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", std_payload("access"), EVP_sha256(),
                     secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
    tok = make_token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", std_payload("access"), EVP_sha256(),
                     secret);
    expect_refused(tok, T0, "algorithm not allowed");
    free(tok);
}

static void test_jwt_wrong_type(void **state)
{
    char *tok;
    char payload[256];

    (void)state;
    tok = make_token(hs256_header, std_payload("refresh"), EVP_sha256(), secret);
    expect_refused(tok, T0, "wrong token type");
    free(tok);
    snprintf(payload, sizeof(payload), "{\"sub\":\"7\",\"iat\":%ld,\"exp\":%ld}", T0,
             T0 + LIFETIME);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    expect_refused(tok, T0, "wrong token type");
    free(tok);
    /* and the control: the same construction with type access passes */
    tok = make_token(hs256_header, std_payload("access"), EVP_sha256(), secret);
    struct sp_jwt_claims c;
    sp_err err = {{0}};
    assert_int_equal(sp_jwt_verify(&conf, tok, T0, &c, &err), 0);
    assert_int_equal(c.sub, 7);
    assert_string_equal(c.role, "customer");
    free(tok);
}

static void test_jwt_tampered(void **state)
{
    char *tok = NULL, *forged, *p, *dot1, *dot2;
    char payload[256];
    sp_err err = {{0}};
    size_t n;

    (void)state;
    assert_int_equal(sp_jwt_issue(&conf, 7, "customer", T0, &tok, &err), 0);
    dot1 = strchr(tok, '.');
    dot2 = strchr(dot1 + 1, '.');
    /* swap in a payload that makes us admin, keep the signature */
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"7\",\"role\":\"admin\",\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,"
             "\"type\":\"access\"}",
             T0, T0, T0 + LIFETIME);
    p = b64url(payload, strlen(payload));
    n = (size_t)(dot1 - tok) + strlen(p) + strlen(dot2) + 2;
    forged = malloc(n);
    assert_non_null(forged);
    snprintf(forged, n, "%.*s.%s%s", (int)(dot1 - tok), tok, p, dot2);
    expect_refused(forged, T0, "bad signature");
    free(forged);
    free(p);
    /* flip one character of the signature */
    forged = strdup(tok);
    assert_non_null(forged);
    p = forged + (dot2 - tok) + 5;
    *p = *p == 'A' ? 'B' : 'A';
    expect_refused(forged, T0, "bad signature");
    /* drop the signature */
    forged[dot2 - tok + 1] = '\0';
    expect_refused(forged, T0, "bad signature");
    free(forged);
    free(tok);
}

/* ---- the cache of verified tokens ----------------------------------------- */

static void expect_cached_refused(struct sp_jwt_cache *cache,
                                  const struct sp_jwt_conf *cf,
                                  const char *tok,
                                  time_t now,
                                  const char *want)
{
    struct sp_jwt_claims c;
    sp_err err = {{0}};

    assert_int_equal(sp_jwt_verify_cached(cache, cf, tok, now, &c, &err), -1);
    assert_true(err.msg[0] != '\0');
    if (want != NULL)
        assert_string_equal(err.msg, want);
}

static void cache_counts(struct sp_jwt_cache *cache, uint64_t hits, uint64_t misses, size_t size)
{
    uint64_t h, m;
    size_t n;

    sp_jwt_cache_stats(cache, &h, &m, &n);
    assert_int_equal(h, hits);
    assert_int_equal(m, misses);
    assert_int_equal(n, size);
}

static void test_jwt_cache_hit_and_expiry(void **state)
{
    struct sp_jwt_cache *cache = sp_jwt_cache_new(8);
    char *tok = NULL;
    sp_err err = {{0}};
    struct sp_jwt_claims c, d;
    long exp = T0 + LIFETIME;

    (void)state;
    assert_non_null(cache);
    assert_int_equal(sp_jwt_issue(&conf, 42, "admin", T0, &tok, &err), 0);
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, T0, &c, &err), 0);
    cache_counts(cache, 0, 1, 1);
    memset(&d, 0, sizeof(d));
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, exp + LEEWAY - 1, &d, &err), 0);
    cache_counts(cache, 1, 1, 1);
    assert_memory_equal(&c, &d, sizeof(c)); /* the same claims as the verification gave */
    assert_int_equal(d.sub, 42);
    assert_string_equal(d.role, "admin");
    /* cached, then expired: refused at expiry, as an uncached verification would be */
    expect_cached_refused(cache, &conf, tok, exp + LEEWAY, "token expired");
    cache_counts(cache, 1, 1, 0);
    expect_cached_refused(cache, &conf, tok, exp + LEEWAY, "token expired");
    cache_counts(cache, 1, 2, 0); /* a refused token is not kept */
    free(tok);
    sp_jwt_cache_free(cache);
}

static void test_jwt_cache_not_yet_valid(void **state)
{
    struct sp_jwt_cache *cache = sp_jwt_cache_new(8);
    struct sp_jwt_conf wide = conf;
    char *tok = NULL;
    sp_err err = {{0}};

    (void)state;
    assert_non_null(cache);
    wide.leeway_s = 300;
    assert_int_equal(sp_jwt_issue(&conf, 3, NULL, T0, &tok, &err), 0);
    /* verified with a wide leeway, then checked again with today's: nbf is checked on a hit */
    assert_int_equal(sp_jwt_verify_cached(cache, &wide, tok, T0 - 200, NULL, &err), 0);
    expect_cached_refused(cache, &conf, tok, T0 - 200, "token not yet valid");
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, T0, NULL, &err), 0);
    cache_counts(cache, 1, 1, 1);
    free(tok);
    sp_jwt_cache_free(cache);
}

static void test_jwt_cache_tampered(void **state)
{
    struct sp_jwt_cache *cache = sp_jwt_cache_new(8);
    char *tok = NULL, *forged;
    sp_err err = {{0}};
    size_t n;

    (void)state;
    assert_non_null(cache);
    assert_int_equal(sp_jwt_issue(&conf, 7, "customer", T0, &tok, &err), 0);
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, T0, NULL, &err), 0);
    n = strlen(tok);
    forged = strdup(tok);
    assert_non_null(forged);
    /* the same prefix, a character of the signature changed */
    forged[n - 5] = forged[n - 5] == 'A' ? 'B' : 'A';
    expect_cached_refused(cache, &conf, forged, T0, "bad signature");
    /* a prefix of a cached token, and the token with one more character */
    forged[n - 5] = tok[n - 5];
    forged[n - 1] = '\0';
    expect_cached_refused(cache, &conf, forged, T0, "bad signature");
    free(forged);
    forged = malloc(n + 2);
    assert_non_null(forged);
    snprintf(forged, n + 2, "%sA", tok);
    expect_cached_refused(cache, &conf, forged, T0, NULL);
    expect_cached_refused(cache, &conf, forged, T0, NULL); /* never kept */
    cache_counts(cache, 0, 5, 1);
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, T0, NULL, &err), 0);
    cache_counts(cache, 1, 5, 1);
    free(forged);
    free(tok);
    sp_jwt_cache_free(cache);
}

static void test_jwt_cache_other_secret(void **state)
{
    struct sp_jwt_cache *cache = sp_jwt_cache_new(8);
    struct sp_jwt_conf other = {(const unsigned char *)"another-secret-another-secret-xx", 32,
                                LIFETIME, LEEWAY};
    char *tok = NULL;
    sp_err err = {{0}};

    (void)state;
    assert_non_null(cache);
    assert_int_equal(sp_jwt_issue(&conf, 1, "admin", T0, &tok, &err), 0);
    assert_int_equal(sp_jwt_verify_cached(cache, &conf, tok, T0, NULL, &err), 0);
    /* the secret changed (a reload): what the old one signed is verified again, and refused */
    expect_cached_refused(cache, &other, tok, T0, "bad signature");
    cache_counts(cache, 0, 2, 0);
    free(tok);
    sp_jwt_cache_free(cache);
}

static void test_jwt_cache_bounded(void **state)
{
    enum { CAP = 16, N = 100 };
    struct sp_jwt_cache *cache = sp_jwt_cache_new(CAP);
    char *toks[N];
    sp_err err = {{0}};
    struct sp_jwt_claims c;
    int i;

    (void)state;
    assert_non_null(cache);
    assert_null(sp_jwt_cache_new(0));
    for (i = 0; i < N; i++) {
        assert_int_equal(sp_jwt_issue(&conf, i + 1, NULL, T0, &toks[i], &err), 0);
        assert_int_equal(sp_jwt_verify_cached(cache, &conf, toks[i], T0, &c, &err), 0);
        assert_int_equal(c.sub, i + 1);
        /* a token in use stays: CLOCK passes it over while newer ones come and go */
        assert_int_equal(sp_jwt_verify_cached(cache, &conf, toks[0], T0, &c, &err), 0);
        assert_int_equal(c.sub, 1);
    }
    cache_counts(cache, N, N, CAP);
    /* every token still verifies, evicted or not, each with its own claims */
    for (i = 0; i < N; i++) {
        assert_int_equal(sp_jwt_verify_cached(cache, &conf, toks[i], T0, &c, &err), 0);
        assert_int_equal(c.sub, i + 1);
    }
    sp_jwt_cache_stats(cache, &(uint64_t){0}, &(uint64_t){0}, &(size_t){0});
    for (i = 0; i < N; i++)
        free(toks[i]);
    sp_jwt_cache_free(cache);
    sp_jwt_cache_free(NULL);
}

static void test_jwt_garbage(void **state)
{
    static const char *const junk[] = {
        "",
        "a.b",
        "...",
        "..",
        "a.b.c",
        "a.b.c.d",
        "abc",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.eyJ9.",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.!!!",
        "eyJhbGciOiJIUzI1NiJ9=.eyJzdWIiOiIxIn0.abcd",
        "W10.e30.abcd",          /* header [] */
        "bnVsbA.e30.abcd",       /* header null */
        "eyJhbGciOjF9.e30.abcd", /* alg 1 */
        "Bearer a.b.c",
        "\xff\xfe.\x01.\x02",
    };
    char *huge;
    size_t i, n = 1u << 20;
    struct sp_jwt_claims c;
    sp_err err = {{0}};

    (void)state;
    for (i = 0; i < SP_ARRAY_LEN(junk); i++)
        expect_refused(junk[i], T0, NULL);
    assert_int_equal(sp_jwt_verify(&conf, NULL, T0, &c, &err), -1);

    huge = malloc(n + 1);
    assert_non_null(huge);
    memset(huge, 'a', n);
    huge[n] = '\0';
    expect_refused(huge, T0, "malformed token");
    huge[1000] = '.';
    huge[n - 1000] = '.';
    expect_refused(huge, T0, "malformed token");
    free(huge);

    /* well-formed but a payload that is not a JSON object, or has bad claims */
    char *tok = make_token(hs256_header, "[1,2]", EVP_sha256(), secret);
    expect_refused(tok, T0, "malformed token");
    free(tok);
    tok = make_token(hs256_header, "{\"sub\":\"7\",\"type\":\"access\"}", EVP_sha256(), secret);
    expect_refused(tok, T0, "malformed token"); /* no exp */
    free(tok);
    tok = make_token(hs256_header, "{\"sub\":\"7\",\"type\":\"access\",\"exp\":1e999}",
                     EVP_sha256(), secret);
    expect_refused(tok, T0, NULL); /* libjwt's jansson refuses it: "bad signature" */
    free(tok);
    tok = make_token(hs256_header, "{\"sub\":\"7\",\"type\":\"access\",\"exp\":\"soon\"}",
                     EVP_sha256(), secret);
    expect_refused(tok, T0, "malformed token");
    free(tok);
    tok = make_token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", std_payload("access"), EVP_sha256(),
                     secret);
    expect_refused(tok, T0, NULL);
    free(tok);
}

static void test_jwt_subject(void **state)
{
    static const char *const bad[] = {
        "\"\"", "\"abc\"", "\"-1\"", "\"0\"", "\"12a\"", "\" 12\"", "\"+12\"",
        "1.5",  "-3",      "0",      "null",  "true",    "[12]",    "\"99999999999999999999\""};
    char payload[256], *tok;
    struct sp_jwt_claims c;
    sp_err err = {{0}};
    size_t i;

    (void)state;
    for (i = 0; i < SP_ARRAY_LEN(bad); i++) {
        snprintf(payload, sizeof(payload), "{\"sub\":%s,\"exp\":%ld,\"type\":\"access\"}", bad[i],
                 T0 + 60);
        tok = make_token(hs256_header, payload, EVP_sha256(), secret);
        expect_refused(tok, T0, "bad subject");
        free(tok);
    }
    snprintf(payload, sizeof(payload), "{\"exp\":%ld,\"type\":\"access\"}", T0 + 60);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    expect_refused(tok, T0, "bad subject");
    free(tok);
    /* an integer sub is accepted too */
    snprintf(payload, sizeof(payload), "{\"sub\":12,\"exp\":%ld,\"type\":\"access\"}", T0 + 60);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    assert_int_equal(sp_jwt_verify(&conf, tok, T0, &c, &err), 0);
    assert_int_equal(c.sub, 12);
    assert_string_equal(c.role, "");
    free(tok);
    /* a role that is not a string */
    snprintf(payload, sizeof(payload), "{\"sub\":\"1\",\"role\":1,\"exp\":%ld,\"type\":\"access\"}",
             T0 + 60);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    expect_refused(tok, T0, "bad role");
    free(tok);
}

/* What Flask-JWT-Extended issued in the old deployment: no role, sub a string, extra claims. */
static void test_jwt_old_deployment(void **state)
{
    char payload[512], *tok;
    struct sp_jwt_claims c;
    sp_err err = {{0}};

    (void)state;
    snprintf(payload, sizeof(payload),
             "{\"fresh\":false,\"iat\":%ld,\"jti\":\"1b6bd1f5-6c47-4b0e-9a3e-2a4c9e0c8f11\","
             "\"type\":\"access\",\"sub\":\"12\",\"nbf\":%ld,"
             "\"csrf\":\"0d6f5cf1-0bd4-4e43-8f3a-1f1f2d8c6a7e\",\"exp\":%ld}",
             T0, T0, T0 + LIFETIME);
    tok = make_token(hs256_header, payload, EVP_sha256(), secret);
    memset(&c, 0x55, sizeof(c));
    assert_int_equal(sp_jwt_verify(&conf, tok, T0 + 60, &c, &err), 0);
    assert_int_equal(c.sub, 12);
    assert_string_equal(c.role, "");
    assert_string_equal(c.jti, "1b6bd1f5-6c47-4b0e-9a3e-2a4c9e0c8f11");
    assert_int_equal(c.iat, T0);
    assert_int_equal(c.nbf, T0);
    assert_int_equal(c.exp, T0 + LIFETIME);
    expect_refused(tok, T0 + LIFETIME + LEEWAY + 1, "token expired");
    free(tok);
}

/* ---- bcrypt, blocking ------------------------------------------------------ */

struct fixture {
    char password[128];
    char hash[128];
};

/* Reads the 4 "password<TAB>hash" lines. */
static int read_fixtures(struct fixture *f, int max)
{
    FILE *fp = fopen(FIXTURES, "r");
    char line[512], *tab;
    int n = 0;

    assert_non_null(fp);
    while (n < max && fgets(line, sizeof(line), fp) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if ((tab = strchr(line, '\t')) == NULL)
            continue;
        *tab = '\0';
        assert_true(strlen(line) < sizeof(f[n].password) && strlen(tab + 1) < sizeof(f[n].hash));
        strcpy(f[n].password, line);
        strcpy(f[n].hash, tab + 1);
        n++;
    }
    fclose(fp);
    return n;
}

static void test_password_hash_verify(void **state)
{
    char hash[128], pw72[73];
    sp_err err = {{0}};

    (void)state;
    assert_int_equal(sp_password_hash("s3cret!", 7, 4, hash, sizeof(hash), &err), 0);
    assert_int_equal(strncmp(hash, "$2b$04$", 7), 0);
    assert_int_equal(strlen(hash), 60);
    assert_int_equal(sp_password_verify("s3cret!", 7, hash), 1);
    assert_int_equal(sp_password_verify("s3cret?", 7, hash), 0);
    assert_int_equal(sp_password_verify("s3cret", 6, hash), 0);
    assert_int_equal(sp_password_verify("", 0, hash), 0);

    memset(pw72, 'p', 72);
    pw72[72] = '\0';
    assert_int_equal(sp_password_hash(pw72, 72, 4, hash, sizeof(hash), &err), 0);
    assert_int_equal(sp_password_verify(pw72, 72, hash), 1);
    /* refused: 73 bytes, a nul inside, bad costs, a short buffer */
    assert_int_equal(sp_password_hash("0123456789012345678901234567890123456789012345678901234"
                                      "567890123456789012",
                                      73, 4, hash, sizeof(hash), &err),
                     -1);
    assert_string_equal(err.msg, "password longer than 72 bytes");
    assert_int_equal(sp_password_hash("a\0b", 3, 4, hash, sizeof(hash), &err), -1);
    assert_string_equal(err.msg, "password contains a nul byte");
    assert_int_equal(sp_password_hash("abc", 3, 3, hash, sizeof(hash), &err), -1);
    assert_int_equal(sp_password_hash("abc", 3, 32, hash, sizeof(hash), &err), -1);
    assert_int_equal(sp_password_hash("abc", 3, 4, hash, 20, &err), -1);
    /* "a\0b" must not verify against the hash of "a" */
    assert_int_equal(sp_password_hash("a", 1, 4, hash, sizeof(hash), &err), 0);
    assert_int_equal(sp_password_verify("a\0b", 3, hash), 0);
    assert_int_equal(sp_password_verify("a", 1, hash), 1);
}

static void test_password_malformed_hashes(void **state)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char md5[128], des[64];
    const char *h;

    (void)state;
    assert_non_null(cd);
    /* crypt() itself would verify these; we accept only bcrypt */
    h = crypt_rn("hunter2", "$1$saltsalt$", cd, sizeof(*cd));
    assert_non_null(h);
    snprintf(md5, sizeof(md5), "%s", h);
    h = crypt_rn("hunter2", "ab", cd, sizeof(*cd));
    assert_non_null(h);
    snprintf(des, sizeof(des), "%s", h);
    free(cd);
    assert_int_equal(sp_password_verify("hunter2", 7, md5), 0);
    assert_int_equal(sp_password_verify("hunter2", 7, des), 0);
    assert_int_equal(sp_password_verify("hunter2", 7, NULL), 0);
    assert_int_equal(sp_password_verify("hunter2", 7, ""), 0);
    assert_int_equal(sp_password_verify("hunter2", 7, "$2b$04$short"), 0);
    assert_int_equal(
        sp_password_verify("hunter2", 7,
                           "$2x$04$lAuIrhfWrsr.tkebOMOTueECMQO2IPDDOdAfxwXKW/zIci.QcCcD2"),
        0);
    assert_int_equal(
        sp_password_verify("hunter2", 7,
                           "$2b$03$lAuIrhfWrsr.tkebOMOTueECMQO2IPDDOdAfxwXKW/zIci.QcCcD2"),
        0);
}

static void test_password_fixtures(void **state)
{
    struct fixture f[8];
    int n, i, prefixes = 0;
    char wrong[160];

    (void)state;
    n = read_fixtures(f, 8);
    assert_int_equal(n, 4);
    for (i = 0; i < n; i++) {
        assert_int_equal(strncmp(f[i].hash, "$2", 2), 0);
        prefixes |= f[i].hash[2] == 'a' ? 1 : f[i].hash[2] == 'b' ? 2 : f[i].hash[2] == 'y' ? 4 : 8;
        assert_int_equal(sp_password_verify(f[i].password, strlen(f[i].password), f[i].hash), 1);
        if (strlen(f[i].password) < 72) {
            snprintf(wrong, sizeof(wrong), "%sx", f[i].password);
            assert_int_equal(sp_password_verify(wrong, strlen(wrong), f[i].hash), 0);
        }
        snprintf(wrong, sizeof(wrong), "%s", f[i].password);
        wrong[0] ^= 1;
        assert_int_equal(sp_password_verify(wrong, strlen(wrong), f[i].hash), 0);
    }
    assert_int_equal(prefixes, 1 | 2 | 4);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A missing account costs about what a real cost-12 check costs. */
static void test_password_dummy_timing(void **state)
{
    struct fixture f[4];
    double t0, real, dummy;

    (void)state;
    assert_int_equal(read_fixtures(f, 4), 4);
    t0 = mono_s();
    assert_int_equal(sp_password_verify("nope", 4, f[0].hash), 0);
    real = mono_s() - t0;
    t0 = mono_s();
    assert_int_equal(sp_password_verify("nope", 4, NULL), 0);
    dummy = mono_s() - t0;
    assert_true(dummy > real * 0.5);
    assert_true(dummy < real * 2.0);
}

/* ---- bcrypt, the pool on a loop ---------------------------------------------- */

struct pool_run {
    struct event_base *base;
    struct sp_hasher *h;
    pthread_t loop_thread;
    int expected, fired, ok, off_loop, ticks, free_in_cb;
    int match[8];
    char result[8][128];
};

struct pool_call {
    struct pool_run *run;
    int slot;
};

static void pool_cb(void *arg, int ok, int match, const char *result)
{
    struct pool_call *call = arg;
    struct pool_run *run = call->run;

    if (!pthread_equal(pthread_self(), run->loop_thread))
        run->off_loop++;
    run->ok += ok;
    run->match[call->slot] = match;
    snprintf(run->result[call->slot], sizeof(run->result[0]), "%s", result ? result : "");
    run->fired++;
    if (run->free_in_cb) {
        sp_hasher_free(run->h); /* the rest must never be called back */
        run->h = NULL;
        event_base_loopbreak(run->base);
    }
    if (run->fired == run->expected)
        event_base_loopbreak(run->base);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pool_run *run = arg;

    (void)fd;
    (void)what;
    run->ticks++;
}

static void give_up_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void test_hasher_pool(void **state)
{
    struct fixture f[4];
    struct pool_run run;
    struct pool_call calls[5];
    struct event *tick, *give_up;
    struct timeval every = {0, 5000}, limit = {600, 0};
    sp_err err = {{0}};
    double t0, took;
    int i;

    (void)state;
    assert_int_equal(read_fixtures(f, 4), 4);
    memset(&run, 0, sizeof(run));
    run.loop_thread = pthread_self();
    assert_non_null(run.base = event_base_new());
    assert_non_null(run.h = sp_hasher_new(run.base, 2, &err));
    for (i = 0; i < 5; i++)
        calls[i] = (struct pool_call){&run, i};

    /* 4 cost-12 verifications on 2 threads: right, wrong, right ($2y$), no hash at all */
    assert_int_equal(sp_hasher_verify(run.h, f[0].password, strlen(f[0].password), f[0].hash,
                                      pool_cb, &calls[0], &err),
                     0);
    assert_int_equal(sp_hasher_verify(run.h, "wrong", 5, f[1].hash, pool_cb, &calls[1], &err), 0);
    assert_int_equal(sp_hasher_verify(run.h, f[2].password, strlen(f[2].password), f[2].hash,
                                      pool_cb, &calls[2], &err),
                     0);
    assert_int_equal(sp_hasher_verify(run.h, "whatever", 8, NULL, pool_cb, &calls[3], &err), 0);
    run.expected = 4;
    assert_int_equal(run.fired, 0); /* nothing is called back before the loop runs */

    tick = event_new(run.base, -1, EV_PERSIST, tick_cb, &run);
    give_up = evtimer_new(run.base, give_up_cb, run.base);
    event_add(tick, &every);
    event_add(give_up, &limit);
    t0 = mono_s();
    event_base_dispatch(run.base);
    took = mono_s() - t0;

    assert_int_equal(run.fired, 4);
    assert_int_equal(run.ok, 4);
    assert_int_equal(run.off_loop, 0);
    assert_int_equal(run.match[0], 1);
    assert_int_equal(run.match[1], 0);
    assert_int_equal(run.match[2], 1);
    assert_int_equal(run.match[3], 0);
    /* the loop kept turning: the 5 ms timer fired through the ~4 bcrypt computations */
    print_message("# 4 verifications took %.3f s, timer fired %d times\n", took, run.ticks);
    /* a blocked loop would manage 1 or 2 (under valgrind, run with --fair-sched=yes) */
    assert_true(run.ticks >= 10);

    /* a new hash through the pool */
    run.expected = 5;
    assert_int_equal(sp_hasher_hash(run.h, "pool pw", 7, 4, pool_cb, &calls[4], &err), 0);
    event_base_dispatch(run.base);
    assert_int_equal(run.fired, 5);
    assert_int_equal(run.ok, 5);
    assert_int_equal(strncmp(run.result[4], "$2b$04$", 7), 0);
    assert_int_equal(sp_password_verify("pool pw", 7, run.result[4]), 1);

    /* refused at the door */
    assert_int_equal(sp_hasher_hash(run.h, "x", 1, 3, pool_cb, &calls[4], &err), -1);
    assert_int_equal(sp_hasher_verify(run.h, "a\0b", 3, NULL, pool_cb, &calls[4], &err), -1);
    assert_string_equal(err.msg, "password contains a nul byte");
    assert_int_equal(sp_hasher_verify(run.h, "x", 1, NULL, NULL, NULL, &err), -1);
    assert_int_equal(
        sp_hasher_verify(run.h,
                         "0123456789012345678901234567890123456789012345678901234567890"
                         "1234567890123",
                         74, NULL, pool_cb, &calls[4], &err),
        -1);

    event_free(tick);
    event_free(give_up);
    sp_hasher_free(run.h);
    event_base_free(run.base);
}

static void test_hasher_free_drops_jobs(void **state)
{
    struct pool_run run;
    struct pool_call call;
    struct event *give_up;
    struct timeval limit = {600, 0};
    char hash[128];
    sp_err err = {{0}};
    int i;

    (void)state;
    assert_null(sp_hasher_new(NULL, 1, &err));
    memset(&run, 0, sizeof(run));
    run.loop_thread = pthread_self();
    assert_non_null(run.base = event_base_new());
    assert_null(sp_hasher_new(run.base, 0, &err));
    sp_hasher_free(NULL);
    call = (struct pool_call){&run, 0};

    /* freed with jobs queued: no callback, no leak, no hang */
    assert_non_null(run.h = sp_hasher_new(run.base, 1, &err));
    for (i = 0; i < 6; i++)
        assert_int_equal(sp_hasher_hash(run.h, "pw", 2, 6, pool_cb, &call, &err), 0);
    sp_hasher_free(run.h);
    event_base_loop(run.base, EVLOOP_NONBLOCK);
    assert_int_equal(run.fired, 0);

    /* freed from inside its first callback: the rest are dropped */
    assert_int_equal(sp_password_hash("pw", 2, 4, hash, sizeof(hash), &err), 0);
    assert_non_null(run.h = sp_hasher_new(run.base, 1, &err));
    for (i = 0; i < 4; i++)
        assert_int_equal(sp_hasher_verify(run.h, "pw", 2, hash, pool_cb, &call, &err), 0);
    run.free_in_cb = 1;
    run.expected = 100;
    give_up = evtimer_new(run.base, give_up_cb, run.base);
    event_add(give_up, &limit);
    event_base_dispatch(run.base);
    assert_null(run.h);
    assert_int_equal(run.fired, 1);
    assert_int_equal(run.match[0], 1);
    event_base_loop(run.base, EVLOOP_NONBLOCK);
    assert_int_equal(run.fired, 1);
    event_free(give_up);
    event_base_free(run.base);
}

/* A cancelled caller's queued jobs are dropped uncalled; a job already hashing finishes. */
static void test_hasher_cancel(void **state)
{
    struct pool_run run;
    struct pool_call first, gone, last;
    struct event *give_up;
    struct timeval limit = {600, 0};
    sp_err err = {{0}};

    (void)state;
    memset(&run, 0, sizeof(run));
    run.loop_thread = pthread_self();
    assert_non_null(run.base = event_base_new());
    assert_non_null(run.h = sp_hasher_new(run.base, 1, &err));
    first = (struct pool_call){&run, 0};
    gone = (struct pool_call){&run, 1};
    last = (struct pool_call){&run, 2};
    /* cost 10 keeps the one thread busy while the others wait in the queue */
    assert_int_equal(sp_hasher_hash(run.h, "first", 5, 10, pool_cb, &first, &err), 0);
    assert_int_equal(sp_hasher_hash(run.h, "gone1", 5, 4, pool_cb, &gone, &err), 0);
    assert_int_equal(sp_hasher_hash(run.h, "gone2", 5, 4, pool_cb, &gone, &err), 0);
    assert_int_equal(sp_hasher_hash(run.h, "last", 4, 4, pool_cb, &last, &err), 0);
    assert_int_equal(sp_hasher_cancel(run.h, &gone), 2);
    assert_int_equal(sp_hasher_cancel(run.h, &gone), 0);
    assert_int_equal(sp_hasher_cancel(NULL, &gone), 0);
    run.expected = 2;
    give_up = evtimer_new(run.base, give_up_cb, run.base);
    event_add(give_up, &limit);
    event_base_dispatch(run.base);
    assert_int_equal(run.fired, 2);
    assert_int_equal(run.ok, 2);
    assert_string_equal(run.result[1], "");
    assert_memory_equal(run.result[0], "$2b$10$", 7);
    assert_memory_equal(run.result[2], "$2b$04$", 7);
    event_free(give_up);
    sp_hasher_free(run.h);
    event_base_free(run.base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_round_trip),
        cmocka_unit_test(test_jwt_unique_jti_and_no_role),
        cmocka_unit_test(test_jwt_issue_refuses),
        cmocka_unit_test(test_jwt_expiry_and_leeway),
        cmocka_unit_test(test_jwt_nbf_future),
        cmocka_unit_test(test_jwt_other_secret),
        cmocka_unit_test(test_jwt_alg_none),
        cmocka_unit_test(test_jwt_hs512_same_secret),
        cmocka_unit_test(test_jwt_rs256_label),
        cmocka_unit_test(test_jwt_wrong_type),
        cmocka_unit_test(test_jwt_tampered),
        cmocka_unit_test(test_jwt_garbage),
        cmocka_unit_test(test_jwt_cache_hit_and_expiry),
        cmocka_unit_test(test_jwt_cache_not_yet_valid),
        cmocka_unit_test(test_jwt_cache_tampered),
        cmocka_unit_test(test_jwt_cache_other_secret),
        cmocka_unit_test(test_jwt_cache_bounded),
        cmocka_unit_test(test_jwt_subject),
        cmocka_unit_test(test_jwt_old_deployment),
        cmocka_unit_test(test_password_hash_verify),
        cmocka_unit_test(test_password_malformed_hashes),
        cmocka_unit_test(test_password_fixtures),
        cmocka_unit_test(test_password_dummy_timing),
        cmocka_unit_test(test_hasher_pool),
        cmocka_unit_test(test_hasher_free_drops_jobs),
        cmocka_unit_test(test_hasher_cancel),
    };
    int failed;

    evthread_use_pthreads(); /* before any event_base: the hasher's threads wake the loop */
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    libevent_global_shutdown(); /* valgrind: nothing left reachable */
    return failed;
}
