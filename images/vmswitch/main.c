/*
 * vmswitch: VM-to-VM switch on one physical CPU, for a two-VM experiment in
 * which this same image runs as both VMs.
 *
 * Hypercall 0x4b000010 ("pass the baton"): the hypervisor switches to the
 * other VM on the same physical CPU, which runs until it makes the same call,
 * and then switches back, so the call returns after one switch each way.
 * Each call is timed on its own, cpu 0 only (w0 = 0x4b000010 set before):
 *     isb; mrs t0, cntvct_el0; hvc #0; isb; mrs t1, cntvct_el0
 * One round trip t1 - t0 = switch to the peer + the peer's code between the
 * return of its previous call and its next call (this loop's bookkeeping:
 * about a dozen instructions, isb/mrs/sub/two stores/loop/mov/isb/mrs) +
 * switch back.  WARMUP untimed calls come first (the first one also covers
 * the peer's boot up to its first call) and COOLDOWN untimed calls last, so
 * that each timed call of either VM is answered by a call of the peer's timed
 * loop or just after it.  The very last call of the VM that started second
 * has no call of the peer left to answer it: the hypervisor must return it
 * (with -1, say) once the peer has powered off; its value is not looked at.
 * Prints
 *     vmswitch: round_trip avg_cycles=<r> min_cycles=.. max_cycles=..
 *     BENCH vm_switch avg_cycles=<r/2> iterations=<k>
 * with r = round(sum(t1 - t0) * cycles_per_tick / k): one switch is half a
 * round trip.  If the call returns -1 (NOT_SUPPORTED: no second VM) it prints
 * `vmswitch: no peer VM (hypercall 0x4b000010 not supported)` and still the
 * BENCH line of what it measured (then: a plain hypercall).  Exits 0.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP      16
#define COOLDOWN    2
#define VM_SWITCH_CALL 0x4b000010u

static uint64_t ticks[ITER];
static int64_t rets[ITER];

/* one timed call; returns x0 and stores t1 - t0 */
static int64_t baton(uint64_t *dt)
{
    register uint64_t x0 __asm__("x0");
    uint64_t t0, t1;
    __asm__ volatile("movz  w0, #0x4b00, lsl #16\n\t"
                     "movk  w0, #0x0010\n\t"
                     "isb\n\t"
                     "mrs   %[t0], cntvct_el0\n\t"
                     "hvc   #0\n\t"
                     "isb\n\t"
                     "mrs   %[t1], cntvct_el0"
                     : "=r"(x0), [t0] "=&r"(t0), [t1] "=&r"(t1)
                     :
                     : "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11",
                       "x12", "x13", "x14", "x15", "x16", "x17", "memory");
    *dt = t1 - t0;
    return (int64_t)x0;
}

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint64_t dt;
    print("vmswitch: hypercall=0x%x warmup=%u iterations=%u cooldown=%u cpus=%u cycles_per_tick=%lu\n",
          VM_SWITCH_CALL, (unsigned)WARMUP, (unsigned)ITER, (unsigned)COOLDOWN, smp_cpu_count(),
          cpt);

    unsigned warm_unsupported = 0;
    for (unsigned i = 0; i < WARMUP; i++)
        warm_unsupported += baton(&dt) == -1;
    for (unsigned i = 0; i < ITER; i++)
        rets[i] = baton(&ticks[i]);
    for (unsigned i = 0; i < COOLDOWN; i++)
        baton(&dt);

    uint64_t sum = 0, tmin = ~0ull, tmax = 0;
    unsigned unsupported = 0, other = 0;
    int64_t other_ret = 0;
    for (unsigned i = 0; i < ITER; i++) {
        sum += ticks[i];
        tmin = ticks[i] < tmin ? ticks[i] : tmin;
        tmax = ticks[i] > tmax ? ticks[i] : tmax;
        if (rets[i] == -1) {
            unsupported++;
        } else if (rets[i] != 0) {
            other++;
            other_ret = rets[i];
        }
    }
    print("vmswitch: calls=%u returned_0=%u not_supported=%u other=%u (warm-up not_supported=%u)\n",
          (unsigned)ITER, (unsigned)ITER - unsupported - other, unsupported, other,
          warm_unsupported);
    if (other)
        print("vmswitch: note: %u calls returned other values (last %ld)\n", other, other_ret);
    if (unsupported == ITER)
        print("vmswitch: no peer VM (hypercall 0x%x not supported)\n", VM_SWITCH_CALL);
    else if (unsupported)
        print("vmswitch: WARNING: %u of %u calls found no peer VM (it left or came late)\n",
              unsupported, (unsigned)ITER);

    uint64_t rt = (sum * cpt + ITER / 2) / ITER;
    uint64_t one = (sum * cpt + ITER) / (2 * ITER);
    print("vmswitch: round_trip sum_ticks=%lu avg_cycles=%lu min_cycles=%lu max_cycles=%lu\n", sum,
          rt, tmin * cpt, tmax * cpt);
    print("BENCH vm_switch avg_cycles=%lu iterations=%u\n", one, (unsigned)ITER);
    return 0;
}
