/*
 * smp-hello: bring every CPU of the DTB online with PSCI and check PSCI's
 * view of them.
 *
 * The boot CPU (cpu 0) prints its own line and counts itself, then starts
 * cpus 1..n-1 with CPU_ON (each must return SUCCESS).  Every CPU prints
 *     smp-hello: cpu <n> mpidr=0x<..> online
 * (print holds the console lock, so lines never mix) and adds 1 to a shared
 * counter with an LDXR/STLXR atomic add; the secondaries then wait, still on,
 * for the boot CPU to finish.  The boot CPU waits (bounded) until the counter
 * reaches n, then calls CPU_ON again for every CPU, itself included: each
 * must return ALREADY_ON; and AFFINITY_INFO must report ON for each.  It then
 * prints `smp-hello: cpus=<n> all online`, releases the secondaries, which
 * return from secondary_main so that the runtime calls CPU_OFF for them, and
 * waits (bounded) for AFFINITY_INFO to report each OFF.
 */
#include "runtime.h"

#define TIMEOUT_SEC 2   /* CNTVCT seconds to wait for the others */

static volatile uint32_t checked_in;
static volatile uint32_t release;

static void check_in(unsigned cpu)
{
    print("smp-hello: cpu %u mpidr=0x%lx online\n", cpu, read_mpidr() & MPIDR_AFF_MASK);
    atomic_add_return(&checked_in, 1);
}

static void secondary(unsigned cpu)
{
    check_in(cpu);
    while (!release)            /* stay on until the boot CPU has checked */
        ;
    /* return: secondary_entry calls PSCI CPU_OFF */
}

/* wait until *p == want or TIMEOUT_SEC pass; returns the last value seen */
static uint32_t wait_for(volatile uint32_t *p, uint32_t want)
{
    uint64_t t0 = read_cntvct(), limit = read_cntfrq() * TIMEOUT_SEC;
    uint32_t v;
    while ((v = *p) != want && read_cntvct() - t0 < limit)
        ;
    return v;
}

int main(void)
{
    unsigned n = smp_cpu_count();
    int errors = 0;
    print("smp-hello: cpus=%u (%s) boot mpidr=0x%lx entry=%p stack=%u KiB\n", n,
          smp_cpu_source(), read_mpidr() & MPIDR_AFF_MASK, (void *)secondary_entry,
          (unsigned)(SECONDARY_STACK_SIZE / 1024));

    secondary_main = secondary;
    check_in(0);
    for (unsigned i = 1; i < n; i++) {
        int64_t r = smp_cpu_on(i);
        if (r != PSCI_SUCCESS) {
            print("smp-hello: ERROR: CPU_ON cpu %u (mpidr 0x%lx) returned %ld %s, expected 0 SUCCESS\n",
                  i, smp_cpu_mpidr(i), r, psci_ret_name(r));
            errors++;
        }
    }

    uint32_t seen = wait_for(&checked_in, n);
    if (seen != n) {
        print("smp-hello: ERROR: only %u of %u cpus checked in after %u s\n", seen, n,
              (unsigned)TIMEOUT_SEC);
        errors++;
    }

    for (unsigned i = 0; i < n; i++) {
        int64_t again = smp_cpu_on(i);
        int64_t aff = smp_affinity_info(i);
        int ok = again == PSCI_ALREADY_ON && aff == PSCI_AFF_ON;
        print("smp-hello: cpu %u CPU_ON again=%ld %s AFFINITY_INFO=%ld %s %s\n", i, again,
              psci_ret_name(again), aff,
              aff == PSCI_AFF_ON ? "ON" : aff == PSCI_AFF_OFF ? "OFF"
              : aff == PSCI_AFF_ON_PENDING ? "ON_PENDING" : psci_ret_name(aff),
              ok ? "ok" : "FAIL (expected -4 ALREADY_ON, 0 ON)");
        if (!ok)
            errors++;
    }
    if (!errors)
        print("smp-hello: cpus=%u all online\n", n);

    /* let the secondaries return: the runtime turns them off with CPU_OFF */
    release = 1;
    smp_mb();
    unsigned off = 0;
    uint64_t t0 = read_cntvct(), limit = read_cntfrq() * TIMEOUT_SEC;
    for (unsigned i = 1; i < n; i++) {
        while (smp_affinity_info(i) != PSCI_AFF_OFF && read_cntvct() - t0 < limit)
            ;
        off += smp_affinity_info(i) == PSCI_AFF_OFF;
    }
    print("smp-hello: secondaries returned, CPU_OFF: %u of %u off\n", off, n - 1);
    if (off != n - 1)
        errors++;
    if (errors)
        print("smp-hello: FAIL errors=%d\n", errors);
    return errors ? 1 : 0;
}
