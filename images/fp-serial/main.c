/* fp-serial: prints on the PL011 while changing its FP/SIMD registers between some of
 * the lines and not others, so a design that switches FP/SIMD lazily (VHE) finds them
 * changed at some user exits since the vCPU was last loaded and unchanged at others.
 * Ends with the registers' checksum (the same under every design), exits 0. */
#include "runtime.h"

#define LINES 24

/* v0 += v1 (two 64-bit lanes); v1 = {1, 3} once */
static void fp_step(void)
{
    __asm__ volatile("add v0.2d, v0.2d, v1.2d" ::: "v0");
}

static uint64_t fp_lane0(void)
{
    uint64_t x;
    __asm__ volatile("fmov %0, d0" : "=r"(x));
    return x;
}

int main(void)
{
    uint64_t one = 1, three = 3;
    __asm__ volatile("fmov d0, xzr\n\tfmov d1, %0\n\tmov v1.d[1], %1" :: "r"(one), "r"(three) : "v0", "v1");
    for (unsigned i = 0; i < LINES; i++) {
        if (i % 3 != 2)                  /* two lines in three change FP/SIMD, one does not */
            fp_step();
        print("fp-serial: line %u lane0=%lu\n", i, fp_lane0());
    }
    print("fp-serial: lines=%u lane0=%lu ok=%u\n", LINES, fp_lane0(), fp_lane0() == 16);
    return fp_lane0() == 16 ? 0 : 1;
}
