/*
 * fuzz: what every libFuzzer target in tests/fuzz shares. Each target
 * defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize);
 * FUZZ_CHECK aborts with a message so libFuzzer saves the input.
 */
#ifndef CREDPROXY_FUZZ_H
#define CREDPROXY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
