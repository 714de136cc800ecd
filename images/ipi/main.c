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
#define TIMEOUT_SEC 2

static volatile uint32_t ready, stop, ack;
static volatile uint64_t entry;                 /* cpu 1's handler entry time */
static volatile uint32_t received, bad_source;

static int irq(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(SGI);
    if (iar == GIC_NOT_WANTED)
        return 1;
    entry = irq_entry_ticks();
    if (gic_version() == 2 && ((iar >> 10) & 7) != 0)   /* source CPU: cpu 0 */
        bad_source++;
    received++;
    gic_eoi(iar);
    smp_mb();                   /* entry and count before the flag */
    ack = 1;
    return 1;
}

static void target(unsigned cpu)
{
    (void)cpu;
    gic_init();                 /* this CPU's interface (v3: its redistributor) */
    gic_set_priority(SGI, PRIO);
    gic_enable_irq(SGI);
    smp_mb();
    ready = 1;
    local_irq_enable();
    while (!stop)
        __asm__ volatile("wfi" ::: "memory");
    local_irq_disable();
}

/* one SGI to cpu 1; returns t0 (CNTVCT just before the send instruction) */
static uint64_t send(uint64_t val, uintptr_t sgir, int v3)
{
    uint64_t t0;
    if (v3)
        __asm__ volatile("dsb ish\n\t"
                         "isb\n\t"
                         "mrs   %0, cntvct_el0\n\t"
                         "msr   S3_0_C12_C11_5, %1\n\t"     /* ICC_SGI1R_EL1 */
                         "isb"
                         : "=&r"(t0) : "r"(val) : "memory");
    else
        __asm__ volatile("dsb ish\n\t"
                         "isb\n\t"
                         "mrs   %0, cntvct_el0\n\t"
                         "str   %w1, [%2]"                  /* GICD_SGIR */
                         : "=&r"(t0) : "r"(val), "r"(sgir) : "memory");
    return t0;
}

int main(void)
{
    unsigned n = smp_cpu_count();
    if (n < 2) {
        print("ipi: skipped: needs >= 2 cpus, cpus=%u (%s)\n", n, smp_cpu_source());
        return 0;
    }
    uint64_t cpt = cycles_per_tick();
    irq_handler = irq;
    gic_init();                 /* boot CPU: distributor + its own interface */
    int v3 = gic_version() == 3;
    print("ipi: gic=v%d (%s) cpus=%u (%s) sgi=%u from cpu 0 to cpu %u, warmup=%u iterations=%u\n",
          gic_version(), gic_source(), n, smp_cpu_source(), SGI, TARGET, (unsigned)WARMUP,
          (unsigned)ITER);

    secondary_main = target;
    int64_t r = smp_cpu_on(TARGET);
    uint64_t t = read_cntvct(), limit = read_cntfrq() * TIMEOUT_SEC;
    while (!ready && read_cntvct() - t < limit)
        ;
    if (r != PSCI_SUCCESS || !ready) {
        print("ipi: ERROR: cpu %u did not come up (CPU_ON returned %ld %s)\n", TARGET, r,
              psci_ret_name(r));
        return 1;
    }
    smp_mb();

    uint64_t val = gic_sgi_value(TARGET, SGI);
    uintptr_t sgir = gic_dist_base() + 0xF00;
    uint64_t per_wait = read_cntfrq() / 10;     /* 100 ms for one IPI */
    uint64_t settle = read_cntfrq() / 50000;    /* 20 us for cpu 1 to sleep again */
    uint64_t sum = 0;
    int64_t lmin = INT64_MAX, lmax = INT64_MIN;
    unsigned lost = 0, negative = 0, sent = 0;
    for (unsigned i = 0; i < WARMUP + ITER; i++) {
        ack = 0;
        uint64_t t0 = send(val, sgir, v3);
        sent++;
        while (!ack && read_cntvct() - t0 < per_wait)
            ;
        if (!ack) {
            lost++;
            continue;
        }
        smp_mb();
        /* Let cpu 1 get back to sleep before the next SGI: after its ack it still
         * returns from the handler and traps on WFI (and, without a vGIC, its EOI
         * traps first).  An SGI sent meanwhile would also time that work, which
         * the IPI path (to a sleeping target) does not include. */
        for (uint64_t s = read_cntvct(); read_cntvct() - s < settle;)
            ;
        int64_t l = (int64_t)(entry - t0);
        if (i < WARMUP)
            continue;
        if (l < 0)
            negative++;
        sum += (uint64_t)(l < 0 ? 0 : l);
        lmin = l < lmin ? l : lmin;
        lmax = l > lmax ? l : lmax;
    }
    uint32_t got = received;
    unsigned counted = ITER - (lost > ITER ? ITER : lost);

    /* let cpu 1 leave its loop (CPU_OFF); not part of the result */
    stop = 1;
    t = read_cntvct();
    do {
        gic_send_sgi(TARGET, SGI);
        for (uint64_t w = read_cntvct(); read_cntvct() - w < per_wait / 100;)
            ;
    } while (smp_affinity_info(TARGET) != PSCI_AFF_OFF && read_cntvct() - t < limit);

    uint64_t avg = counted ? (sum * cpt + counted / 2) / counted : 0;
    print("ipi: sent=%u received=%u lost=%u spurious=%u unexpected=%u min_ticks=%ld max_ticks=%ld "
          "sum_ticks=%lu cycles_per_tick=%lu\n",
          sent, got, lost, irq_tally.spurious, irq_tally.unexpected, lmin, lmax, sum, cpt);
    int errors = 0;
    if (lost || got != sent) {
        print("ipi: ERROR: %u of %u SGIs did not arrive\n", sent - got, sent);
        errors++;
    }
    if (irq_tally.unexpected) {
        print("ipi: ERROR: %u unexpected interrupts (last INTID %u)\n", irq_tally.unexpected, irq_tally.last_unexpected);
        errors++;
    }
    if (bad_source) {
        print("ipi: ERROR: %u SGIs with a source CPU other than 0\n", bad_source);
        errors++;
    }
    if (negative) {
        print("ipi: ERROR: %u handler entries before their send (CNTVCT skew between CPUs)\n",
              negative);
        errors++;
    }
    print("ipi: min_cycles=%ld max_cycles=%ld\n", lmin * (int64_t)cpt, lmax * (int64_t)cpt);
    print("BENCH ipi avg_cycles=%lu iterations=%u\n", avg, counted);
    return errors ? 1 : 0;
}
