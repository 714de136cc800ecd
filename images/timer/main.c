/*
 * timer: periodic EL1 virtual timer interrupts (PPI 27) through the GIC.
 *
 * Programs CNTV_CVAL for NIRQ deadlines INTERVAL ticks apart, each one the
 * previous CVAL + INTERVAL (no drift).  The handler acknowledges, reads
 * CNTV_CTL (ISTATUS must be 1), records irq_entry_ticks() (CNTVCT read by the
 * vector's first instruction), programs the next CVAL, and EOIs; after the
 * last one it disables the timer before the EOI.  main spins with IRQs
 * unmasked until all have arrived.
 *
 * Checks: every entry lies in [CVAL, CVAL + MAX_LATENCY] (never early, never
 * later than MAX_LATENCY), hence every interval between consecutive entries
 * lies in [INTERVAL - MAX_LATENCY, INTERVAL + MAX_LATENCY]; ISTATUS = 1 in
 * every handler; no other INTID arrives.
 */
#include "runtime.h"

#ifndef NIRQ
#define NIRQ 100
#endif
#define INTERVAL    10000u
#define MAX_LATENCY (INTERVAL / 2)
#define PRIO        0xA0u
#define MAX_REPORTS 10

static volatile uint32_t count, istatus_ones;
static uint64_t entry[NIRQ], deadline[NIRQ];
static uint64_t next_cval;

static int irq(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(INTID_VTIMER);
    if (iar == GIC_NOT_WANTED)
        return 1;
    if (cntv_ctl_read() & CNTV_CTL_ISTATUS)
        istatus_ones++;
    uint32_t n = count;
    if (n < NIRQ) {
        entry[n] = irq_entry_ticks();
        deadline[n] = next_cval;
        count = ++n;
    }
    if (n < NIRQ) {
        next_cval += INTERVAL;
        cntv_cval_write(next_cval);     /* deadline in the future: the line drops */
    } else {
        cntv_ctl_write(0);              /* done: timer off */
    }
    gic_eoi(iar);
    return 1;
}

int main(void)
{
    irq_handler = irq;
    gic_init();
    gic_set_priority(INTID_VTIMER, PRIO);
    gic_enable_irq(INTID_VTIMER);
    print("timer: gic=v%d (%s) interval=%u ticks max_latency=%u ticks cntfrq=%lu\n",
          gic_version(), gic_source(), INTERVAL, MAX_LATENCY, read_cntfrq());

    next_cval = read_cntvct() + INTERVAL;
    cntv_cval_write(next_cval);
    cntv_ctl_write(CNTV_CTL_ENABLE);
    local_irq_enable();
    uint64_t guard = read_cntvct() + (uint64_t)INTERVAL * (NIRQ + 10) * 20;
    while (count < NIRQ && read_cntvct() < guard)
        ;
    local_irq_disable();
    cntv_ctl_write(0);

    uint32_t n = count;
    if (n < NIRQ) {
        print("timer: ERROR: only %u of %u interrupts arrived (spurious=%u unexpected=%u)\n",
              n, (unsigned)NIRQ, irq_tally.spurious, irq_tally.unexpected);
        return 1;
    }

    int ok = 1;
    uint32_t nbad = 0;
    uint64_t dmin = ~0ull, dmax = 0;
    int64_t lmin = INT64_MAX, lmax = INT64_MIN;
    for (uint32_t i = 0; i < NIRQ; i++) {
        int64_t lat = (int64_t)(entry[i] - deadline[i]);
        lmin = lat < lmin ? lat : lmin;
        lmax = lat > lmax ? lat : lmax;
        if (lat < 0 || lat > (int64_t)MAX_LATENCY) {
            if (nbad++ < MAX_REPORTS)
                print("timer: BAD entry %u: at %lu, deadline %lu (latency %ld ticks)\n",
                      i, entry[i], deadline[i], lat);
            ok = 0;
        }
        if (i == 0)
            continue;
        uint64_t d = entry[i] - entry[i - 1];
        dmin = d < dmin ? d : dmin;
        dmax = d > dmax ? d : dmax;
        if (d + MAX_LATENCY < INTERVAL || d > INTERVAL + MAX_LATENCY) {
            if (nbad++ < MAX_REPORTS)
                print("timer: BAD interval %u: %lu ticks\n", i, d);
            ok = 0;
        }
    }
    if (nbad > MAX_REPORTS)
        print("timer: ... %u BAD lines in all\n", nbad);
    uint64_t span = entry[NIRQ - 1] - entry[0];
    uint64_t avg = (span + (NIRQ - 1) / 2) / (NIRQ - 1);
    print("timer: interval min=%lu max=%lu avg=%lu ticks; latency min=%ld max=%ld ticks\n",
          dmin, dmax, avg, lmin, lmax);
    print("timer: istatus_in_handler=%u of %u, spurious=%u, unexpected=%u\n",
          istatus_ones, n, irq_tally.spurious, irq_tally.unexpected);
    if (istatus_ones != n) {
        print("timer: ERROR: CNTV_CTL.ISTATUS read 0 in %u handlers\n", n - istatus_ones);
        ok = 0;
    }
    if (irq_tally.unexpected) {
        print("timer: ERROR: %u unexpected interrupts (last INTID %u)\n", irq_tally.unexpected, irq_tally.last_unexpected);
        ok = 0;
    }
    print("timer: interrupts=%u intervals_ok=%d\n", n, ok);
    return ok ? 0 : 1;
}
