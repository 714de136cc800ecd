/*
 * gic-trap: cost of a guest read of a GIC distributor register, GICD_TYPER
 * (a 32-bit `ldr w1, [x2]` with x2 = GICD base + 4 = 0x08000004), which traps
 * to the hypervisor's distributor emulation.
 *
 * The method of mmio-user: times ITER reads in a tight loop, times the
 * identical loop without the load, and reports the difference per read in CPU
 * cycles:
 *   avg_cycles = round(((t1 - t0) - (b1 - b0)) * cycles_per_tick / ITER)
 * Checks that TYPER.ITLinesNumber ([4:0]) is non-zero: the platform has SPIs
 * (the PL011 is SPI 1), so the distributor has more than 32 interrupt lines.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP 16

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint64_t addr = gic_dist_base() + GICD_TYPER;
    uint32_t typer;

    mmio_read32_loop(WARMUP, addr, &typer);
    mmio_baseline_loop(WARMUP, addr);

    uint64_t t = mmio_read32_loop(ITER, addr, &typer);
    uint64_t b = mmio_baseline_loop(ITER, addr);
    int64_t dticks = (int64_t)(t - b);
    uint64_t avg = 0;
    if (dticks > 0)
        avg = ((uint64_t)dticks * cpt + ITER / 2) / ITER;

    unsigned itl = typer & 0x1f;
    print("gic_trap: gic=v%d (%s) GICD_TYPER=0x%x ITLinesNumber=%u lines=%u "
          "loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n",
          gic_version(), gic_source(), typer, itl, 32 * (itl + 1), t, b, cpt);
    if (itl == 0 || typer == 0xffffffffu) {
        print("gic_trap: ERROR: GICD_TYPER=0x%x: ITLinesNumber=%u, expected SPIs (> 32 lines)\n",
              typer, itl);
        return 1;
    }
    print("BENCH gic_trap avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
