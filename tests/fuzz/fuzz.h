/* fuzz.h: what every tests/fuzz/fuzz_NAME.c shares. A target defines LLVMFuzzerTestOneInput
 * (and may define LLVMFuzzerInitialize); libFuzzer drives it under `make fuzz`, replay.c
 * replays the committed corpus under `make test`. A broken property calls FUZZ_FAIL, which
 * aborts, so both drivers report it. */
#ifndef SP_FUZZ_H
#define SP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FAIL(...)                                                                         \
    do {                                                                                       \
        fprintf(stderr, "%s:%d: property broken: ", __FILE__, __LINE__);                       \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                   \
        abort();                                                                               \
    } while (0)

/* A NUL-terminated copy of data[0..size), or NULL when data holds a NUL (a C string API
 * cannot be given one). The caller frees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s;

    if (memchr(data, '\0', size) != NULL || (s = malloc(size + 1)) == NULL)
        return NULL;
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
