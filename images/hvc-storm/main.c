/* hvc-storm: back-to-back no-op hypercalls (SMCCC 0x4b000000) and nothing else,
 * so a host benchmark measures hypercall throughput, not console output. */
#include "runtime.h"

#ifndef STORM_CALLS
#define STORM_CALLS 50000
#endif

volatile uint32_t storm_calls = STORM_CALLS;    /* patchable in .data */

int main(void)
{
    uint64_t n = storm_calls, bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        register uint64_t x0 __asm__("x0") = 0x4b000000;
        __asm__ volatile("hvc #0" : "+r"(x0) : : "memory");
        bad += x0 != ~0ull;
    }
    print("hvc-storm: calls=%lu not_supported=%lu\n", n, n - bad);
    return bad ? 1 : 0;
}
