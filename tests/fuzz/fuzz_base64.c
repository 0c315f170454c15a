/* fuzz_base64.c: sp_base64_decode and sp_hex_decode (core/sp.c), behind
 * spacer.crypto.base64_decode and .hex_decode. The first byte picks the decoder. Properties:
 * never a write past the promised room; what decodes is canonical, so encoding the bytes gives
 * the input back (padding aside for base64, case aside for hex); OpenSSL agrees on the bytes. */
#include <ctype.h>
#include <openssl/evp.h>

#include "fuzz.h"
#include "sp.h"

static void check_base64(const char *s, size_t len)
{
    size_t room = 3 * (len / 4) + 2, n = 0;
    unsigned char *out = malloc(room), *enc = malloc(4 * (room / 3 + 1) + 1);
    sp_err err;

    if (out == NULL || enc == NULL)
        abort();
    if (sp_base64_decode(s, len, out, &n, &err) != 0) {
        if (strncmp(err.msg, "invalid base64: ", 16) != 0)
            FUZZ_FAIL("unexpected error: %s", err.msg);
        goto done;
    }
    if (n > room)
        FUZZ_FAIL("decoded %zu bytes into room for %zu", n, room);
    int elen = EVP_EncodeBlock(enc, out, (int)n);
    size_t bare = len, ebare = (size_t)elen;
    while (bare > 0 && s[bare - 1] == '=')
        bare--;
    while (ebare > 0 && enc[ebare - 1] == '=')
        ebare--;
    if (bare != ebare || memcmp(s, enc, bare) != 0)
        FUZZ_FAIL("\"%.*s\" decodes to bytes that encode as \"%s\"", (int)len, s, enc);
    /* padded to a multiple of 4, OpenSSL must read the same bytes */
    if (len % 4 == 0 && len > 0) {
        unsigned char *ossl = malloc(room + 3);
        if (ossl == NULL)
            abort();
        int on = EVP_DecodeBlock(ossl, (const unsigned char *)s, (int)len);
        if (on < 0 || (size_t)on - (len - bare) != n || memcmp(ossl, out, n) != 0)
            FUZZ_FAIL("OpenSSL reads \"%.*s\" differently", (int)len, s);
        free(ossl);
    }
done:
    free(out);
    free(enc);
}

static void check_hex(const char *s, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char *out = malloc(len / 2 + 1);
    size_t n = 0;
    sp_err err;

    if (out == NULL)
        abort();
    if (sp_hex_decode(s, len, out, &n, &err) != 0) {
        if (strncmp(err.msg, "invalid hex: ", 13) != 0)
            FUZZ_FAIL("unexpected error: %s", err.msg);
        free(out);
        return;
    }
    if (n * 2 != len)
        FUZZ_FAIL("%zu hex digits gave %zu bytes", len, n);
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[2 * i]) != digits[out[i] >> 4] ||
            tolower((unsigned char)s[2 * i + 1]) != digits[out[i] & 15])
            FUZZ_FAIL("byte %zu of \"%.*s\" decoded as %02x", i, (int)len, s, out[i]);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* an exact-size copy of the text, so a read past it is caught */
    char *s = malloc(size - 1 ? size - 1 : 1);
    if (s == NULL)
        abort();
    memcpy(s, data + 1, size - 1);
    if (data[0] & 1)
        check_hex(s, size - 1);
    else
        check_base64(s, size - 1);
    free(s);
    return 0;
}
