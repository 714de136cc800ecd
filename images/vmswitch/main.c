/*
 * vmswitch: VM-to-VM switch on one physical CPU, for a two-VM experiment in
 * which this same image runs as both VMs (armvirt run --vm vmswitch.elf
 * --vm vmswitch.elf: two 1-vCPU VMs share pCPU 0).
 *
 * Hypercall 0x4b000010 with x1 = a value ("pass the baton"): the hypervisor
 * switches to the other VM on the same physical CPU; the call returns (x0) the
 * value the peer passes in ITS next call, or -1 when there is no peer VM or
 * the peer has powered off.  Each VM passes its counter reading:
 *     isb; mrs x1, cntvct_el0; hvc #0; isb; mrs t1, cntvct_el0
 * so t1 - x0 is one switch: from the peer's counter read before its HVC to
 * this VM's read after its ERET (the peer's HVC instruction, its exit, the
 * host's switch between the VMs and this VM's entry).
 * WARMUP untimed calls come first (the first one also covers the peer's boot),
 * then ITER timed ones, then COOLDOWN untimed ones: the last call of the VM
 * that started second has no call of the peer left to answer it and returns
 * -1 once the peer has powered off.  Prints
 *     vmswitch: one_way min_cycles=.. max_cycles=..
 *     BENCH vm_switch avg_cycles=<n> iterations=<k>
 * with n = round(sum(t1 - x0) * cycles_per_tick / k).  If the first call
 * returns -1 (no second VM) it prints `vmswitch: no peer VM (hypercall
 * 0x4b000010 not supported)` and `BENCH vm_switch skipped (no peer VM)`.
 * Exits 0.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 200
#endif
#define WARMUP      4
#define COOLDOWN    1
#define VM_SWITCH_CALL 0x4b000010u     /* the runtime's vm_switch_call() */
#define NO_PEER     ((uint64_t)-1)

static uint64_t ticks[ITER];

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint64_t t1;
    print("vmswitch: hypercall=0x%x warmup=%u iterations=%u cooldown=%u cycles_per_tick=%lu\n",
          VM_SWITCH_CALL, (unsigned)WARMUP, (unsigned)ITER, (unsigned)COOLDOWN, cpt);

    if (vm_switch_call(&t1) == NO_PEER) {
        print("vmswitch: no peer VM (hypercall 0x%x not supported)\n", VM_SWITCH_CALL);
        print("BENCH vm_switch skipped (no peer VM)\n");
        return 0;
    }
    for (unsigned i = 1; i < WARMUP; i++)
        vm_switch_call(&t1);
    unsigned got = 0;
    for (unsigned i = 0; i < ITER; i++) {
        uint64_t v = vm_switch_call(&t1);
        if (v == NO_PEER)
            break;
        ticks[got++] = t1 - v;
    }
    unsigned left = 0;
    for (unsigned i = 0; i < COOLDOWN; i++)
        left += vm_switch_call(&t1) == NO_PEER;

    uint64_t sum = 0, tmin = ~0ull, tmax = 0;
    for (unsigned i = 0; i < got; i++) {
        sum += ticks[i];
        tmin = ticks[i] < tmin ? ticks[i] : tmin;
        tmax = ticks[i] > tmax ? ticks[i] : tmax;
    }
    if (got < ITER) {
        print("vmswitch: the peer left after %u of %u timed calls\n", got, (unsigned)ITER);
        exit_status(1);
    }
    print("vmswitch: one_way min_cycles=%lu max_cycles=%lu (cooldown calls with no peer: %u)\n",
          tmin * cpt, tmax * cpt, left);
    print("BENCH vm_switch avg_cycles=%lu iterations=%u\n", (sum * cpt + got / 2) / got, got);
    return 0;
}
