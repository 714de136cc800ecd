/*
 * irq-latency: virtual timer deadline -> first instruction of the guest's IRQ
 * handler.
 *
 * Each iteration, with IRQs unmasked: t = CNTVCT, CVAL = t + DELAY, timer on,
 * then the single instruction `b .` at spin_pc.  The handler acknowledges,
 * masks the timer (CNTV_CTL.IMASK) before the EOI so it cannot fire again,
 * and, if ELR_EL1 == spin_pc, records
 *     latency = irq_entry_ticks() - CVAL
 * (irq_entry_ticks() is the CNTVCT read by the IRQ vector's first
 * instruction) and returns to spin_pc + 4.  So the interval measured runs from
 * the tick at which CNTVCT reaches CVAL to the vector's first instruction: the
 * interrupt delivery path only, no guest instruction of the loop or handler.
 *
 * An interrupt taken anywhere else (the deadline passed before the loop was
 * reached: impossible under armvirt, possible under a host-timed emulator) is
 * not counted: the handler re-arms the timer DELAY ticks later and the
 * iteration is retried.  WARMUP iterations come first and are not counted.
 *   avg_cycles = round(sum(latency) * cycles_per_tick / ITER)
 */
#include "runtime.h"

#ifndef ITER
#define ITER 100
#endif
#define WARMUP  4
#define DELAY   2000u
#define PRIO    0xA0u

static volatile uint64_t spin_pc, latency;
static volatile uint32_t fired, retries;

static int irq(struct exc_frame *f)
{
    uint32_t iar = gic_ack_wanted(INTID_VTIMER);
    if (iar == GIC_NOT_WANTED)
        return 1;
    uint64_t entry = irq_entry_ticks();
    uint64_t cval = cntv_cval_read();
    cntv_ctl_write(CNTV_CTL_ENABLE | CNTV_CTL_IMASK);   /* no refire after the EOI */
    gic_eoi(iar);
    if (f->elr == spin_pc) {
        latency = entry - cval;
        f->elr += 4;                    /* return past the `b .` */
        fired = 1;
    } else {                            /* early: try again once the loop is reached */
        retries++;
        cntv_cval_write(read_cntvct() + DELAY);
        cntv_ctl_write(CNTV_CTL_ENABLE);
    }
    return 1;
}

/* Arm the timer DELAY ticks ahead and spin on one `b .` until the handler
 * moves ELR past it; returns the latency of that interrupt in ticks. */
static uint64_t one(void)
{
    fired = 0;
    __asm__ volatile(
        "adr    x0, 1f\n\t"
        "str    x0, [%[pc]]\n\t"
        "isb\n\t"
        "mrs    x0, cntvct_el0\n\t"
        "add    x0, x0, %[delay]\n\t"
        "msr    cntv_cval_el0, x0\n\t"
        "mov    x0, #1\n\t"             /* ENABLE, IMASK = 0 */
        "msr    cntv_ctl_el0, x0\n\t"
        "isb\n"
        "1:\n\t"
        "b      1b\n"                   /* the handler returns to the next instruction */
        :
        : [pc] "r"(&spin_pc), [delay] "r"((uint64_t)DELAY)
        : "x0", "memory");
    return latency;
}

int main(void)
{
    irq_handler = irq;
    uint64_t cpt = cycles_per_tick();
    gic_init();
    gic_set_priority(INTID_VTIMER, PRIO);
    gic_enable_irq(INTID_VTIMER);
    local_irq_enable();

    for (int i = 0; i < WARMUP; i++)
        one();
    uint64_t sum = 0, lmin = ~0ull, lmax = 0;
    for (int i = 0; i < ITER; i++) {
        uint64_t l = one();
        sum += l;
        lmin = l < lmin ? l : lmin;
        lmax = l > lmax ? l : lmax;
    }
    local_irq_disable();
    cntv_ctl_write(0);

    uint64_t avg = (sum * cpt + ITER / 2) / ITER;
    print("irq_latency: gic=v%d (%s) deadline=+%u ticks min_ticks=%lu max_ticks=%lu sum_ticks=%lu "
          "cycles_per_tick=%lu retries=%u spurious=%u\n",
          gic_version(), gic_source(), DELAY, lmin, lmax, sum, cpt, retries, irq_tally.spurious);
    if (irq_tally.unexpected) {
        print("irq_latency: ERROR: %u unexpected interrupts (last INTID %u)\n",
              irq_tally.unexpected, irq_tally.last_unexpected);
        return 1;
    }
    print("irq_latency: min_cycles=%lu max_cycles=%lu\n", lmin * cpt, lmax * cpt);
    print("BENCH irq_latency avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
