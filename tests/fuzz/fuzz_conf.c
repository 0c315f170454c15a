/* fuzz_conf.c: core/conf.c, what an operator writes. Even first byte: the rest is spacer.conf
 * text (sections, ${VAR:-default} interpolation, typed keys, application sections); odd: the
 * rest is a .env file. Properties: either parsed or one error naming the file; every setting
 * kept points at a line of the text; .env names are variable names and values one line. */
#include "conf.h"
#include "fuzz.h"

struct env_check {
    const char *text;
};

static void on_env(void *arg, const char *key, const char *value)
{
    struct env_check *ec = arg;

    if (key[0] == '\0' || strchr(key, '=') != NULL || strchr(key, ' ') != NULL)
        FUZZ_FAIL(".env key \"%s\" is no variable name", key);
    if (strchr(value, '\n') != NULL)
        FUZZ_FAIL(".env value of %s spans lines", key);
    if (strstr(ec->text, key) == NULL)
        FUZZ_FAIL(".env key \"%s\" is not in the text", key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sp_conf *c = NULL;
    sp_err err;

    if (size < 1)
        return 0;
    char *text = fuzz_cstr(data + 1, size - 1);
    if (text == NULL)
        return 0;
    err.msg[0] = '\0';
    if (data[0] & 1) {
        struct env_check ec = {text};
        if (sp_conf_parse_env(text, "fuzz.env", on_env, &ec, &err) != 0 &&
            strncmp(err.msg, "fuzz.env:", 9) != 0)
            FUZZ_FAIL(".env error without file:line: %s", err.msg);
        free(text);
        return 0;
    }
    if (sp_conf_parse(text, "fuzz.conf", &c, &err) == 0) {
        int lines = 1;
        for (const char *p = text; *p; p++)
            lines += *p == '\n';
        for (int i = 0; i < c->nentries; i++)
            if (c->entries[i].line < 0 || c->entries[i].line > lines)
                FUZZ_FAIL("setting %s.%s at line %d of %d", c->entries[i].section,
                          c->entries[i].key, c->entries[i].line, lines);
        sp_conf_free(c);
    } else if (err.msg[0] == '\0') {
        FUZZ_FAIL("a refused spacer.conf without a reason");
    }
    free(text);
    return 0;
}
