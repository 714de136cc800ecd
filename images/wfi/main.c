/*
 * wfi: a WFI that sleeps until the virtual timer fires.
 *
 * t0 = CNTVCT, CVAL = t0 + SLEEP, the timer interrupt enabled at the GIC and
 * IRQs unmasked; then `wfi` in a loop until the handler has run:
 *     while (!woken) { wfi; loop_iterations++; }
 * The handler acknowledges, disables the timer and EOIs.
 *   slept_ticks = irq_entry_ticks() - t0   (>= SLEEP: the deadline is never early)
 * A WFI that waits properly returns once, when the interrupt arrives, so the
 * loop runs once (allowing for a few spurious wake-ups: <= MAX_LOOPS); a WFI
 * that does not wait would loop until the deadline.
 */
#include "runtime.h"

#define SLEEP       1000000u
#define MAX_LOOPS   3u
#define PRIO        0xA0u

static volatile uint32_t woken, wakeups;

static int irq(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(INTID_VTIMER);
    if (iar == GIC_NOT_WANTED)
        return 1;
    cntv_ctl_write(0);                  /* one shot */
    wakeups++;
    woken = 1;
    gic_eoi(iar);
    return 1;
}

int main(void)
{
    irq_handler = irq;
    gic_init();
    gic_set_priority(INTID_VTIMER, PRIO);
    gic_enable_irq(INTID_VTIMER);

    uint64_t t0 = read_cntvct();
    cntv_cval_write(t0 + SLEEP);
    cntv_ctl_write(CNTV_CTL_ENABLE);
    local_irq_enable();
    uint64_t loops = 0;
    while (!woken) {
        __asm__ volatile("wfi" ::: "memory");
        loops++;
    }
    local_irq_disable();
    uint64_t slept = irq_entry_ticks() - t0;
    uint64_t t1 = read_cntvct();

    print("wfi: gic=v%d (%s) sleep=%u ticks elapsed_ticks=%lu spurious=%u\n",
          gic_version(), gic_source(), SLEEP, t1 - t0, irq_tally.spurious);
    print("wfi: slept_ticks=%lu wakeups=%u loop_iterations=%lu\n", slept, wakeups, loops);
    int ok = 1;
    if (slept < SLEEP) {
        print("wfi: ERROR: woke %lu ticks before the deadline\n", SLEEP - slept);
        ok = 0;
    }
    if (loops > MAX_LOOPS) {
        print("wfi: ERROR: the wfi loop ran %lu times (> %u): WFI did not wait\n", loops, MAX_LOOPS);
        ok = 0;
    }
    if (irq_tally.unexpected) {
        print("wfi: ERROR: %u unexpected interrupts (last INTID %u)\n", irq_tally.unexpected, irq_tally.last_unexpected);
        ok = 0;
    }
    return ok ? 0 : 1;
}
