/* sp.h: what every core module shares: the error buffer, small helpers, version.
 * Nothing here knows HTTP, SQL or Lua. */
#ifndef SP_H
#define SP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SP_VERSION "0.1.0"

/* One short lowercase line written by whoever detects a failure; the edge logs it. */
typedef struct sp_err {
    char msg[256];
} sp_err;

void sp_err_set(sp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SP_UNUSED(x)    ((void)(x))

/* Monotonic clock in microseconds. */
uint64_t sp_now_us(void);



/* A growable byte buffer. The bytes are the owner's; free with sp_buf_free(). */
struct sp_buf {
    char *data;
    size_t len, cap;
};

void sp_buf_reserve(struct sp_buf *b, size_t more);
void sp_buf_printf(struct sp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sp_buf_free(struct sp_buf *b);

/* 1 when one of the 8 bytes of w is below 0x20, a quote or a backslash: a byte JSON text must
 * escape (bit tricks of "Bit Twiddling Hacks": hasless(w, 0x20) and haszero(w ^ c); exact as
 * a yes/no). */
static inline int sp_word_needs_json_escape(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');

    return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs ? 1 : 0;
}

/* Inline: a response head is some twenty small appends, most of a constant length, which
 * then compile to a few moves instead of two calls each. */
static inline void sp_buf_add(struct sp_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap)
        sp_buf_reserve(b, n);
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void sp_buf_addc(struct sp_buf *b, char c)
{
    if (b->len + 2 > b->cap)
        sp_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

static inline void sp_buf_adds(struct sp_buf *b, const char *s)
{
    sp_buf_add(b, s, strlen(s));
}
/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int sp_utf8_valid(const char *s, size_t len);
/* Writes v in decimal at at (up to 20 bytes, no NUL); the length. For hot paths: no printf. */
size_t sp_fmt_u64(char *at, uint64_t v);

/* Strict decoders: out has room for 3 * (len / 4) + 2 (base64) or len / 2 (hex) bytes and
 * *outlen is what was written. base64 is RFC 4648's standard alphabet, "=" padding optional
 * but exact, no whitespace, zero bits after the last byte; hex is either case, even length.
 * Anything else is -1 with a reason in err. */
int sp_base64_decode(const char *s, size_t len, unsigned char *out, size_t *outlen, sp_err *err);
int sp_hex_decode(const char *s, size_t len, unsigned char *out, size_t *outlen, sp_err *err);
#endif
