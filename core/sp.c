/* sp.c: the few helpers every module uses: error buffers and clocks. */
#include "sp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sp_err_set(sp_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

uint64_t sp_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sp_buf_reserve(struct sp_buf *b, size_t more)
{
    size_t want = b->len + more + 1;

    if (want <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    if ((b->data = realloc(b->data, cap)) == NULL)
        abort(); /* out of memory: nothing sensible left to do */
    b->cap = cap;
}

void sp_buf_printf(struct sp_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sp_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sp_buf_free(struct sp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t sp_fmt_u64(char *at, uint64_t v)
{
    char rev[20];
    size_t n = 0;

    do
        rev[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++)
        at[i] = rev[n - 1 - i];
    return n;
}

int sp_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *e = s + len;

    while (s < e) {
        unsigned c = *s;
        if (c < 0x80) {
            s++;
            continue;
        }
        int n;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0)
            n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            n = 3, cp = c & 0x07, min = 0x10000;
        else
            return 0;
        if (e - s <= n)
            return 0;
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += n + 1;
    }
    return 1;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int sp_base64_decode(const char *s, size_t len, unsigned char *out, size_t *outlen, sp_err *err)
{
    size_t n = 0, data = len, i;
    uint32_t acc = 0;

    while (data > 0 && s[data - 1] == '=')
        data--;
    if (len - data > 2 || (len != data && len % 4 != 0)) {
        sp_err_set(err, "invalid base64: bad padding");
        return -1;
    }
    if (data % 4 == 1) {
        sp_err_set(err, "invalid base64: truncated input");
        return -1;
    }
    for (i = 0; i < data; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            sp_err_set(err, "invalid base64: unexpected character at byte %zu", i + 1);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[n++] = (unsigned char)(acc >> 16);
            out[n++] = (unsigned char)(acc >> 8);
            out[n++] = (unsigned char)acc;
            acc = 0;
        }
    }
    /* 2 or 3 characters left hold 1 or 2 bytes; the bits beyond them must be zero, or two
     * texts would decode alike (RFC 4648 3.5). */
    if (data % 4 == 2) {
        if (acc & 0xf)
            goto noncanonical;
        out[n++] = (unsigned char)(acc >> 4);
    } else if (data % 4 == 3) {
        if (acc & 0x3)
            goto noncanonical;
        out[n++] = (unsigned char)(acc >> 10);
        out[n++] = (unsigned char)(acc >> 2);
    }
    *outlen = n;
    return 0;
noncanonical:
    sp_err_set(err, "invalid base64: non-zero bits after the last byte");
    return -1;
}

int sp_hex_decode(const char *s, size_t len, unsigned char *out, size_t *outlen, sp_err *err)
{
    if (len % 2 != 0) {
        sp_err_set(err, "invalid hex: odd length");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0) {
            sp_err_set(err, "invalid hex: unexpected character at byte %zu", i + 1);
            return -1;
        }
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    *outlen = len / 2;
    return 0;
}
