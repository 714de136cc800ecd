/*
 * ipi: inter-processor interrupt latency, cpu 0 -> cpu 1, SGI 2.
 *
 * Needs two CPUs (with one it prints a skip line and exits 0).  cpu 1 runs
 * gic_init() for its own CPU interface / redistributor, enables SGI 2
 * (priority 0xA0) and waits in `while (!stop) wfi;` with IRQs unmasked.  Its
 * handler acknowledges, stores irq_entry_ticks() (CNTVCT read by the IRQ
 * vector's first instruction, x18) in a shared variable, counts the SGI,
 * EOIs and then sets an ack flag.  cpu 0, IRQs masked, WARMUP + ITER times:
 * clears the flag, `dsb ish; isb`, then
 *     mrs t0, cntvct_el0 ; str w, [GICD_SGIR]           (GICv2)
 *     mrs t0, cntvct_el0 ; msr ICC_SGI1R_EL1, x          (GICv3)
 * and spins on the flag (bounded); latency = handler_entry - t0; then it waits
 * 20 us so that cpu 1 is asleep again before the next SGI (without a vGIC its
 * EOI and WFI trap after the ack, and an SGI sent meanwhile would time them
 * too: that was the 17.9k-for-9.4k "limitation" of the first version).  So one
 * sample covers the SGI write (a trap to the distributor emulation / the SGI
 * register trap under a hypervisor), delivery to cpu 1, its wake-up from WFI
 * and the exception entry up to the vector's first instruction; nothing of
 * the handler.  Both timestamps come from CNTVCT on different CPUs, so a
 * negative sample (counter skew between CPUs) is an error.
 *   avg_cycles = round(sum(latency) * cycles_per_tick / ITER)
 * The measurement is the runtime's ipi_measure(), which microbench uses too.
 * Exits 1 if an SGI was lost, another interrupt came in or a sample was
 * negative.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP      10
#define SGI         2u
#define TARGET      1u
#define PRIO        0xA0u

int main(void)
{
    unsigned n = smp_cpu_count();
    if (n < 2) {
        print("ipi: skipped: needs >= 2 cpus, cpus=%u (%s)\n", n, smp_cpu_source());
        return 0;
    }
    uint64_t cpt = cycles_per_tick();
    gic_init();                 /* boot CPU: distributor + its own interface */
    print("ipi: gic=v%d (%s) cpus=%u (%s) sgi=%u from cpu 0 to cpu %u, warmup=%u iterations=%u\n",
          gic_version(), gic_source(), n, smp_cpu_source(), SGI, TARGET, (unsigned)WARMUP,
          (unsigned)ITER);

    struct ipi_result r;
    if (!ipi_measure(TARGET, SGI, PRIO, WARMUP, ITER, &r)) {
        print("ipi: ERROR: cpu %u did not come up (CPU_ON returned %ld %s)\n", TARGET, r.cpu_on,
              psci_ret_name(r.cpu_on));
        return 1;
    }
    uint64_t avg = r.counted ? (r.sum * cpt + r.counted / 2) / r.counted : 0;
    print("ipi: sent=%u received=%u lost=%u spurious=%u unexpected=%u min_ticks=%ld max_ticks=%ld "
          "sum_ticks=%lu cycles_per_tick=%lu\n",
          r.sent, r.received, r.lost, irq_tally.spurious, irq_tally.unexpected, r.min, r.max, r.sum, cpt);
    int errors = 0;
    if (r.lost || r.received != r.sent) {
        print("ipi: ERROR: %u of %u SGIs did not arrive\n", r.sent - r.received, r.sent);
        errors++;
    }
    if (irq_tally.unexpected) {
        print("ipi: ERROR: %u unexpected interrupts (last INTID %u)\n", irq_tally.unexpected, irq_tally.last_unexpected);
        errors++;
    }
    if (r.bad_source) {
        print("ipi: ERROR: %u SGIs with a source CPU other than 0\n", r.bad_source);
        errors++;
    }
    if (r.negative) {
        print("ipi: ERROR: %u handler entries before their send (CNTVCT skew between CPUs)\n",
              r.negative);
        errors++;
    }
    print("ipi: min_cycles=%ld max_cycles=%ld\n", r.min * (int64_t)cpt, r.max * (int64_t)cpt);
    print("BENCH ipi avg_cycles=%lu iterations=%u\n", avg, r.counted);
    return errors ? 1 : 0;
}
