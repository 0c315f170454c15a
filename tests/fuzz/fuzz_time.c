/* fuzz_time.c: sp_time_parse and sp_time_format (core/lua_spacer.c), what every booking, quote
 * and availability time goes through. The first byte picks a zone (UTC, fixed offsets and
 * zones with DST gaps and overlaps); the rest is the text. Properties: whatever parses formats,
 * in its own zone and in every other, and the formatted text parses back to the same instant;
 * with the input's first 8 bytes as an epoch instead, a formattable instant survives
 * format -> parse in every zone. */
#include "fuzz.h"
#include "lua_spacer.h"

static const char *const zones[] = {
    "UTC",           "Europe/Berlin",    "America/New_York", "Africa/Nairobi",
    "Asia/Kolkata",  "Australia/Lord_Howe", "Pacific/Apia",   "America/Sao_Paulo",
    "Europe/London", "Asia/Tehran",      "Pacific/Kiritimati", "Africa/Casablanca",
};
#define NZONES (sizeof(zones) / sizeof(zones[0]))

static void round_trip(int64_t t, const char *via)
{
    char buf[64];
    int64_t back;
    sp_err err;

    for (size_t z = 0; z < NZONES; z++) {
        if (sp_time_format(t, zones[z], buf, sizeof(buf), &err) != 0)
            FUZZ_FAIL("%s: %lld does not format in %s: %s", via, (long long)t, zones[z], err.msg);
        /* with an offset, the zone given to parse must not matter */
        if (sp_time_parse(buf, zones[(z + 1) % NZONES], &back, &err) != 0)
            FUZZ_FAIL("%s: \"%s\" (%s) does not parse back: %s", via, buf, zones[z], err.msg);
        if (back != t)
            FUZZ_FAIL("%s: %lld formats in %s as \"%s\", which parses as %lld", via,
                      (long long)t, zones[z], buf, (long long)back);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t t;
    sp_err err;

    if (size < 1)
        return 0;
    if (data[0] == 0xff && size >= 9) { /* an epoch */
        memcpy(&t, data + 1, sizeof(t));
        t %= 253402300800LL + 62167219200LL; /* into years 0000 to 9999, mostly */
        char buf[64];
        if (sp_time_format(t, "UTC", buf, sizeof(buf), &err) == 0)
            round_trip(t, "epoch");
        return 0;
    }
    char *s = fuzz_cstr(data + 1, size - 1);
    if (s == NULL)
        return 0;
    if (sp_time_parse(s, zones[data[0] % NZONES], &t, &err) == 0) {
        round_trip(t, s);
    } else if (strncmp(err.msg, "not an ISO 8601", 15) != 0) {
        FUZZ_FAIL("\"%s\": unexpected error %s", s, err.msg);
    }
    free(s);
    return 0;
}
