/*
 * ipi: inter-processor interrupt latency, cpu 0 -> cpu 1, SGI 2, twice:
 *   ipi      cpu 1 spins with IRQs unmasked (both vCPUs running: ISCA'16's
 *            "virtual IPI"): the kick reaches a running vCPU - a physical IPI
 *            to its pCPU, an IRQ exit, injection, re-entry;
 *   ipi_wfi  cpu 1 waits in `while (!stop) wfi;` (the wake-up path).
 *
 * Needs two CPUs (with one it prints a skip line and exits 0).  cpu 1 runs
 * gic_init() for its own CPU interface / redistributor, enables SGI 2
 * (priority 0xA0) and spins or waits with IRQs unmasked.  Its handler
 * acknowledges, stores irq_entry_ticks() (CNTVCT read by the IRQ vector's first
 * instruction, x18) in a shared variable, counts the SGI, EOIs and then sets an
 * ack flag.  cpu 0, IRQs masked, WARMUP + ITER times: clears the flag,
 * `dsb ish; isb`, then
 *     mrs t0, cntvct_el0 ; str w, [GICD_SGIR]           (GICv2)
 *     mrs t0, cntvct_el0 ; msr ICC_SGI1R_EL1, x          (GICv3)
 * and spins on the flag (bounded); latency = handler_entry - t0.  Before the
 * next SGI it waits until cpu 1 is back where it was: spinning again (its loop
 * count moves), or, for ipi_wfi, 20 us so that it is asleep again (without a
 * vGIC its EOI and WFI trap after the ack, and an SGI sent meanwhile would
 * time them too).  So one sample covers the SGI write (a trap to the
 * distributor emulation / the SGI register trap under a hypervisor), delivery
 * to cpu 1 (a physical IPI and an exit, or a wake-up from WFI) and the
 * exception entry up to the vector's first instruction; nothing of the
 * handler.  Both timestamps come from CNTVCT on different CPUs, so a negative
 * sample (counter skew between CPUs) is an error.
 *   avg_cycles = round(sum(latency) * cycles_per_tick / ITER)
 * The measurement is the runtime's ipi_measure(), which microbench uses too.
 * Exits 1 if an SGI was lost, another interrupt came in or a sample was
 * negative.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 200
#endif
#define WARMUP      10
#define SGI         2u
#define TARGET      1u
#define PRIO        0xA0u

static int measure(const char *name, enum ipi_mode mode, uint64_t cpt)
{
    struct ipi_result r;
    if (!ipi_measure(TARGET, SGI, PRIO, WARMUP, ITER, mode, &r)) {
        print("%s: ERROR: cpu %u did not come up (CPU_ON returned %ld %s)\n", name, TARGET,
              r.cpu_on, psci_ret_name(r.cpu_on));
        return 1;
    }
    uint64_t avg = r.counted ? (r.sum * cpt + r.counted / 2) / r.counted : 0;
    print("%s: sent=%u received=%u lost=%u spurious=%u unexpected=%u min_ticks=%ld max_ticks=%ld "
          "sum_ticks=%lu cycles_per_tick=%lu\n", name, r.sent, r.received, r.lost,
          irq_tally.spurious, irq_tally.unexpected, r.min, r.max, r.sum, cpt);
    int errors = 0;
    if (r.lost || r.received != r.sent) {
        print("%s: ERROR: %u of %u SGIs did not arrive\n", name, r.sent - r.received, r.sent);
        errors++;
    }
    if (irq_tally.unexpected) {
        print("%s: ERROR: %u unexpected interrupts (last INTID %u)\n", name, irq_tally.unexpected,
              irq_tally.last_unexpected);
        errors++;
    }
    if (r.bad_source) {
        print("%s: ERROR: %u SGIs with a source CPU other than 0\n", name, r.bad_source);
        errors++;
    }
    if (r.negative) {
        print("%s: ERROR: %u handler entries before their send (CNTVCT skew between CPUs)\n",
              name, r.negative);
        errors++;
    }
    print("%s: min_cycles=%ld max_cycles=%ld\n", name, r.min * (int64_t)cpt, r.max * (int64_t)cpt);
    print("BENCH %s avg_cycles=%lu iterations=%u\n", name, avg, r.counted);
    return errors;
}

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

    int errors = 0;
    errors += measure("ipi", IPI_SPIN, cpt);
    errors += measure("ipi_wfi", IPI_WFI, cpt);
    return errors ? 1 : 0;
}
