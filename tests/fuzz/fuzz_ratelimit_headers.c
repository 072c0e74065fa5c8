/*
 * fuzz_ratelimit_headers: Retry-After and X-RateLimit-Reset parsing (the
 * values come from the upstream). A parsed delay is within 0..RL_MAX_PAUSE_MS;
 * the first 8 bytes choose the wall clock.
 */
#include <string.h>

#include "fuzz.h"
#include "ratelimit_headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t wall = 0, d = -1;
    if (size < 8 || size > 4096)
        return 0;
    memcpy(&wall, data, 8);
    /* A wall clock a system can have: 1970 .. about year 3000, or near 2025-11-30. */
    wall = data[0] & 1 ? 1764460800000 + (wall & 0xffffffffff) : wall & 0x1fffffffffff;
    char *v = malloc(size - 8 + 1);
    FUZZ_CHECK(v != NULL);
    memcpy(v, data + 8, size - 8);
    v[size - 8] = '\0';
    if (rl_parse_retry_after(v, wall, &d) == 0)
        FUZZ_CHECK(d >= 0 && d <= RL_MAX_PAUSE_MS);
    d = -1;
    if (rl_parse_reset(v, wall, &d) == 0)
        FUZZ_CHECK(d >= 0 && d <= RL_MAX_PAUSE_MS);
    free(v);
    return 0;
}
