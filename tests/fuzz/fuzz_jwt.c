/* fuzz_jwt.c: sp_jwt_verify (core/auth.c), what every Authorization header reaches. The first
 * byte picks the shape: a raw token; a header and claims (JSON, split at the first NUL byte)
 * signed here with the test secret so the fuzzer gets past the signature; or a subject and role
 * issued with sp_jwt_issue, which must verify back to themselves (a role that is not UTF-8
 * may be refused). Whatever verifies has a
 * positive subject, a role that fits, and times that hold at the fixed now. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "fuzz.h"

#define SECRET "test-secret-0123456789abcdef0123456789abcdef"
#define NOW    1800000000L /* 2027-01-15 */

static const struct sp_jwt_conf conf = {(const unsigned char *)SECRET, sizeof(SECRET) - 1, 3600,
                                        30};

/* Appends base64url of p[0..n) without padding; returns the new length. */
static size_t b64url(char *out, size_t at, const unsigned char *p, size_t n)
{
    size_t len = (size_t)EVP_EncodeBlock((unsigned char *)out + at, p, (int)n);

    for (size_t i = at; i < at + len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (len > 0 && out[at + len - 1] == '=')
        len--;
    out[at + len] = '\0';
    return at + len;
}

static void verify(const char *token, int must_pass, int64_t sub, const char *role)
{
    struct sp_jwt_claims c;
    sp_err err;

    if (sp_jwt_verify(&conf, token, NOW, &c, &err) != 0) {
        if (must_pass)
            FUZZ_FAIL("an issued token does not verify: %s", err.msg);
        if (err.msg[0] == '\0')
            FUZZ_FAIL("a refused token without a reason");
        return;
    }
    if (c.sub < 1 || memchr(c.role, '\0', sizeof(c.role)) == NULL ||
        memchr(c.jti, '\0', sizeof(c.jti)) == NULL)
        FUZZ_FAIL("verified claims out of shape: sub %lld", (long long)c.sub);
    if (c.exp <= NOW - conf.leeway_s || c.nbf > NOW + conf.leeway_s)
        FUZZ_FAIL("verified a token outside its times: exp %ld nbf %ld", c.exp, c.nbf);
    if (must_pass && (c.sub != sub || strcmp(c.role, role) != 0))
        FUZZ_FAIL("issued %lld/%s, verified %lld/%s", (long long)sub, role, (long long)c.sub,
                  c.role);
}

static void signed_token(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t hlen = nul ? (size_t)(nul - data) : size;
    size_t plen = nul ? size - hlen - 1 : 0;
    char *token = malloc(4 * (size / 3) + 128);
    unsigned char md[32];
    unsigned int mdlen = 0;
    size_t n;

    if (token == NULL)
        abort();
    n = b64url(token, 0, data, hlen);
    token[n++] = '.';
    n = b64url(token, n, nul ? nul + 1 : data, plen);
    HMAC(EVP_sha256(), SECRET, sizeof(SECRET) - 1, (const unsigned char *)token, n, md, &mdlen);
    token[n++] = '.';
    b64url(token, n, md, mdlen);
    verify(token, 0, 0, NULL);
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0: {
        char *token = fuzz_cstr(data + 1, size - 1);
        if (token != NULL)
            verify(token, 0, 0, NULL);
        free(token);
        break;
    }
    case 1: signed_token(data + 1, size - 1); break;
    default: {
        int64_t sub;
        char *role, *token = NULL;
        sp_err err;
        if (size < 9 || (role = fuzz_cstr(data + 9, size - 9)) == NULL)
            return 0;
        memcpy(&sub, data + 1, sizeof(sub));
        if (sp_jwt_issue(&conf, sub, role, NOW, &token, &err) == 0)
            verify(token, 1, sub, role);
        else if (sub >= 1 && strlen(role) < 32 && sp_utf8_valid(role, strlen(role)))
            FUZZ_FAIL("cannot issue %lld/%s: %s", (long long)sub, role, err.msg);
        free(token);
        free(role);
        break;
    }
    }
    return 0;
}
