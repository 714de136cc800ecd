/*
 * eoi: end of interrupt through the (virtual) CPU interface, which under a
 * hypervisor with a vGIC completes the interrupt without a trap.  Two
 * operations, in this order:
 *
 * eoi (ISCA'16 Table I "virtual IRQ completion", as KVM/ARM's developers'
 * in-guest benchmark times it): ITER writes of 1023 to GICC_EOIR (v2) or
 * ICC_EOIR1_EL1 (v3) in a loop - the spurious INTID, whose EOI the GIC ignores
 * (IHI 0048B 4.4.5, IHI 0069 12.2.9), so nothing needs to be pending - minus
 * the loop with the write replaced by a str to RAM (v2) or a nop (v3):
 *   avg_cycles = round((loop - baseline) * cycles_per_tick / ITER)
 *
 * ack_eoi: acknowledge + EOI of a pending interrupt.  With IRQs masked at the
 * PE (PSTATE.I = 1), each iteration sends SGI 1 to this CPU and waits until
 * the CPU interface reports it pending (GICC_HPPIR / ICC_HPPIR1_EL1), then
 * times exactly
 *   GICv2:  isb; mrs t0, cntvct_el0; ldr w1, [GICC_IAR]; str w1, [GICC_EOIR];
 *           isb; mrs t1, cntvct_el0
 *   GICv3:  isb; mrs t0, cntvct_el0; mrs x1, ICC_IAR1_EL1; msr ICC_EOIR1_EL1, x1;
 *           isb; mrs t1, cntvct_el0
 * and a baseline with the two GIC accesses replaced (v2: the same ldr/str to
 * two words of RAM, v3: two nops); both sums run over ITER iterations:
 *   avg_cycles = round((sum(t) - sum(baseline)) * cycles_per_tick / ITER)
 * Every acknowledge must return SGI 1 (IAR[9:0] == 1).  The loops are the
 * runtime's (bench.c), which microbench uses too.
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

    eoi_spurious_loop(WARMUP);
    eoi_spurious_baseline_loop(WARMUP);
    uint64_t t = eoi_spurious_loop(ITER);
    uint64_t b = eoi_spurious_baseline_loop(ITER);
    print("eoi: gic=v%d (%s) intid=1023 loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n",
          gic_version(), gic_source(), t, b, cpt);
    print("BENCH eoi avg_cycles=%lu iterations=%u\n", bench_loop_avg(t, b, ITER, cpt), (unsigned)ITER);

    struct eoi_result r;
    if (!eoi_measure(SGI, PRIO, WARMUP, ITER, &r)) {
        print("eoi: ERROR: SGI %u not pending at the CPU interface after %d polls "
              "(HPPIR=0x%x, iteration %d)\n", SGI, EOI_WAIT_POLLS, gic_hppir(), r.stuck_at);
        return 1;
    }
    print("ack_eoi: sgi=%u acks_ok=%u loop_ticks=%lu baseline_ticks=%lu\n", SGI, r.ok, r.ticks,
          r.baseline);
    if (r.bad) {
        print("ack_eoi: ERROR: %u acknowledges did not return SGI %u (last IAR=0x%x)\n",
              r.bad, SGI, r.last_bad);
        return 1;
    }
    print("BENCH ack_eoi avg_cycles=%lu iterations=%u\n", bench_loop_avg(r.ticks, r.baseline, ITER, cpt),
          (unsigned)ITER);
    return 0;
}
