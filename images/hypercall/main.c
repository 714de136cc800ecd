/*
 * hypercall: cost of the guest -> hypervisor -> guest round trip.
 *
 * Times ITER calls of the armvirt no-op function 0x4b000000 (returns -1) with
 * `hvc #0` in a tight loop, times an identical loop without the `hvc` (the
 * runtime's hvc_loop/hvc_baseline_loop, which microbench uses too), and
 * reports the difference per call in CPU cycles:
 *   avg_cycles = round(((t1 - t0) - (b1 - b0)) * cycles_per_tick / ITER)
 * Also checks the return value and that x1..x17 survive the call.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP 16

/* One call with known values in x1..x17; returns the number of mismatches. */
static const uint64_t want[18] = {
    PSCI_NOT_SUPPORTED, 0x1111111111111111, 0x2222222222222222, 0x3333333333333333,
    0x4444444444444444, 0x5555555555555555, 0x6666666666666666, 0x7777777777777777,
    0x8888888888888888, 0x9999999999999999, 0xaaaaaaaaaaaaaaaa, 0xbbbbbbbbbbbbbbbb,
    0xcccccccccccccccc, 0xdddddddddddddddd, 0xeeeeeeeeeeeeeeee, 0x0f0f0f0f0f0f0f0f,
    0x1616161616161616, 0x1717171717171717};

static int check_call(void)
{
    uint64_t in[18], got[18];
    memcpy(in, want, sizeof(in));
    in[0] = ARMVIRT_BENCH_CALL;
    __asm__ volatile(
        "ldp    x0, x1, [%[in], #0]\n\t"
        "ldp    x2, x3, [%[in], #16]\n\t"
        "ldp    x4, x5, [%[in], #32]\n\t"
        "ldp    x6, x7, [%[in], #48]\n\t"
        "ldp    x8, x9, [%[in], #64]\n\t"
        "ldp    x10, x11, [%[in], #80]\n\t"
        "ldp    x12, x13, [%[in], #96]\n\t"
        "ldp    x14, x15, [%[in], #112]\n\t"
        "ldp    x16, x17, [%[in], #128]\n\t"
        "hvc    #0\n\t"
        "stp    x0, x1, [%[out], #0]\n\t"
        "stp    x2, x3, [%[out], #16]\n\t"
        "stp    x4, x5, [%[out], #32]\n\t"
        "stp    x6, x7, [%[out], #48]\n\t"
        "stp    x8, x9, [%[out], #64]\n\t"
        "stp    x10, x11, [%[out], #80]\n\t"
        "stp    x12, x13, [%[out], #96]\n\t"
        "stp    x14, x15, [%[out], #112]\n\t"
        "stp    x16, x17, [%[out], #128]\n"
        :
        : [in] "r"(in), [out] "r"(got)
        : "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11",
          "x12", "x13", "x14", "x15", "x16", "x17", "memory");
    int bad = 0;
    for (int i = 0; i < 18; i++) {
        if (got[i] != want[i]) {
            print("hypercall: x%d=0x%lx expected 0x%lx\n", i, got[i], want[i]);
            bad++;
        }
    }
    return bad;
}

int main(void)
{
    sync_handler = hvc_undef_as_not_supported;     /* QEMU: see bench.c */
    uint64_t cpt = cycles_per_tick();

    hvc_loop(WARMUP);
    hvc_baseline_loop(WARMUP);

    if (check_call()) {
        print("hypercall: ERROR: return value or registers not preserved\n");
        return 1;
    }
    print("hypercall: ret=-1 regs preserved\n");

    uint64_t t = hvc_loop(ITER);
    uint64_t b = hvc_baseline_loop(ITER);
    uint64_t avg = bench_loop_avg(t, b, ITER, cpt);
    print("hypercall: loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n", t, b, cpt);
    if (undef_hvcs)
        print("hypercall: note: hvc was UNDEFINED %lu times (not armvirt?); "
              "emulated NOT_SUPPORTED in the guest\n", undef_hvcs);
    print("BENCH hypercall avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
