/*
 * gic-trap: cost of a guest read of a GIC distributor register, GICD_IIDR
 * (a 32-bit `ldr w1, [x2]` with x2 = GICD base + 8 = 0x08000008), which traps
 * to the hypervisor's distributor emulation - the interrupt controller trap of
 * ISCA'16 Table I, as KVM/ARM's developers' in-guest benchmark times it.
 *
 * The method of mmio-user: times ITER reads in a tight loop, times the
 * identical loop without the load, and reports the difference per read in CPU
 * cycles:
 *   avg_cycles = round(((t1 - t0) - (b1 - b0)) * cycles_per_tick / ITER)
 * Checks that IIDR names ARM as the implementer ([11:0] = 0x43B, JEP106), as
 * every GIC armvirt and KVM emulate does.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP 16
#define IIDR_IMPLEMENTER_ARM 0x43Bu

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint64_t addr = gic_dist_base() + GICD_IIDR;
    uint32_t iidr;

    uint64_t t, b;
    uint64_t avg = mmio_read_bench(addr, WARMUP, ITER, cpt, &iidr, &t, &b);

    print("gic_trap: gic=v%d (%s) GICD_IIDR=0x%x implementer=0x%x loop_ticks=%lu baseline_ticks=%lu "
          "cycles_per_tick=%lu\n", gic_version(), gic_source(), iidr, iidr & 0xfff, t, b, cpt);
    if ((iidr & 0xfff) != IIDR_IMPLEMENTER_ARM) {
        print("gic_trap: ERROR: GICD_IIDR=0x%x: implementer 0x%x, expected ARM (0x%x)\n", iidr,
              iidr & 0xfff, IIDR_IMPLEMENTER_ARM);
        return 1;
    }
    print("BENCH gic_trap avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
