/*
 * eoi: acknowledge + end of interrupt through the (virtual) CPU interface,
 * which under a hypervisor with a vGIC completes the interrupt without a trap.
 *
 * With IRQs masked at the PE (PSTATE.I = 1), each iteration sends SGI 1 to
 * this CPU and waits until the CPU interface reports it pending (GICC_HPPIR /
 * ICC_HPPIR1_EL1), then times exactly
 *   GICv2:  isb; mrs t0, cntvct_el0; ldr w1, [GICC_IAR]; str w1, [GICC_EOIR];
 *           isb; mrs t1, cntvct_el0
 *   GICv3:  isb; mrs t0, cntvct_el0; mrs x1, ICC_IAR1_EL1; msr ICC_EOIR1_EL1, x1;
 *           isb; mrs t1, cntvct_el0
 * and a baseline with the two GIC accesses replaced:
 *   GICv2:  by the same ldr/str to two words of RAM,
 *   GICv3:  by two nops (a system register access has no plain stand-in),
 * so (t1 - t0) - (baseline) is the cost of the two GIC accesses beyond that
 * of an ordinary instruction.  Both sums run over ITER iterations:
 *   avg_cycles = round((sum(t) - sum(baseline)) * cycles_per_tick / ITER)
 * Every acknowledge must return SGI 1 (IAR[9:0] == 1).  The loop is the
 * runtime's eoi_measure(), which microbench uses too.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP      16
#define SGI         1u
#define PRIO        0xA0u

int main(void)
{
    local_irq_disable();
    uint64_t cpt = cycles_per_tick();
    gic_init();
    struct eoi_result r;
    if (!eoi_measure(SGI, PRIO, WARMUP, ITER, &r)) {
        print("eoi: ERROR: SGI %u not pending at the CPU interface after %d polls "
              "(HPPIR=0x%x, iteration %d)\n", SGI, EOI_WAIT_POLLS, gic_hppir(), r.stuck_at);
        return 1;
    }
    uint64_t avg = bench_loop_avg(r.ticks, r.baseline, ITER, cpt);
    print("eoi: gic=v%d (%s) sgi=%u acks_ok=%u loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n",
          gic_version(), gic_source(), SGI, r.ok, r.ticks, r.baseline, cpt);
    if (r.bad) {
        print("eoi: ERROR: %u acknowledges did not return SGI %u (last IAR=0x%x)\n",
              r.bad, SGI, r.last_bad);
        return 1;
    }
    print("BENCH eoi avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
