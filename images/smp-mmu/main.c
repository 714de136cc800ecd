/*
 * smp-mmu: SMP with every CPU's stage-1 MMU and caches on.
 *
 * cpu 0 builds one level-1 table (mmu.c: 4 KiB granule, 39-bit VAs):
 *   L1[0]  0x00000000-0x3fffffff  device block (GIC, UART), XN
 *   L1[1]  0x40000000-0x7fffffff  normal write-back block, inner shareable (RAM)
 *   L1[2]  0x80000000-0xbfffffff  the same RAM again (an alias: VA - 1 GiB)
 * and turns its MMU on; every secondary turns on the same map first thing
 * (secondary_entry starts it with the MMU off).  Then, all with the MMU on:
 *   1. spinlock: every CPU takes the LDAXR/STLXR lock ITER times and
 *      increments a shared counter with a plain load/store - the secondaries
 *      through the alias, so the count is right only if their stage-1
 *      translation really is on (and the lock holds);
 *   2. IPIs: cpu 0 sends ROUNDS SGIs to each secondary in turn, which sleeps in
 *      WFI with IRQs unmasked and counts them in its handler; cpu 0 waits
 *      (bounded) for each one to be counted before the next.
 * Prints
 *     smp-mmu: cpus=<n> mmu_on=<m> count=<c> expected=<n*ITER> ipis=<r>/<s> ok=<0|1>
 * (mmu_on: CPUs that read SCTLR_EL1.M = 1 back) and exits 0 only if ok.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 2000
#endif
#define ROUNDS      20
#define SGI         3u
#define PRIO        0xA0u
#define TIMEOUT_SEC 30
#define SZ_1G       0x40000000UL

static uint64_t l1[512] __attribute__((aligned(4096)));
static spinlock_t lock;
static volatile uint64_t counter;
static volatile uint32_t started, mmu_count, go, done, stop;
static volatile uint32_t received[MAX_CPUS];

static void *alias(volatile void *p)
{
    return (void *)((uintptr_t)p + SZ_1G);
}

static void build_tables(void)
{
    l1[0] = 0x0 | D_VALID | D_ATTR(ATTR_DEVICE) | D_AF | D_PXN | D_UXN;
    l1[1] = SZ_1G | D_VALID | D_ATTR(ATTR_NORMAL) | D_SH_INNER | D_AF;
    l1[2] = SZ_1G | D_VALID | D_ATTR(ATTR_NORMAL) | D_SH_INNER | D_AF | D_PXN | D_UXN;
}

static void this_cpu_mmu_on(void)
{
    mmu_on(l1);
    if (SYSREG_READ("sctlr_el1") & SCTLR_M)
        atomic_add_return(&mmu_count, 1);
}

static void spin_work(volatile uint64_t *count)
{
    while (!go)
        ;
    for (unsigned i = 0; i < ITER; i++) {
        spin_lock(&lock);
        uint64_t c = *count;            /* non-atomic read-modify-write */
        *count = c + 1;
        spin_unlock(&lock);
    }
}

static int on_sgi(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(SGI);
    if (iar != GIC_NOT_WANTED) {
        received[cpu_id() % MAX_CPUS]++;
        gic_eoi(iar);
    }
    return 1;
}

static void secondary(unsigned cpu)
{
    (void)cpu;
    this_cpu_mmu_on();
    gic_init();
    gic_set_priority(SGI, PRIO);
    gic_enable_irq(SGI);
    atomic_add_return(&started, 1);
    spin_work(alias(&counter));
    atomic_add_return(&done, 1);
    local_irq_enable();
    while (!stop)
        __asm__ volatile("wfi" ::: "memory");
}

static int wait_for(volatile uint32_t *p, uint32_t want, uint64_t limit)
{
    uint64_t t0 = read_cntvct();
    while (*p != want && read_cntvct() - t0 < limit)
        ;
    smp_mb();
    return *p == want;
}

int main(void)
{
    unsigned n = smp_cpu_count();
    int errors = 0;
    build_tables();
    this_cpu_mmu_on();
    gic_init();
    irq_handler = on_sgi;
    print("smp-mmu: cpus=%u (%s) gic=v%d, MMU on (SCTLR_EL1=0x%lx), iterations=%u, rounds=%u\n",
          n, smp_cpu_source(), gic_version(), SYSREG_READ("sctlr_el1"), (unsigned)ITER,
          (unsigned)ROUNDS);

    secondary_main = secondary;
    for (unsigned i = 1; i < n; i++) {
        int64_t r = smp_cpu_on(i);
        if (r != PSCI_SUCCESS) {
            print("smp-mmu: ERROR: CPU_ON cpu %u returned %ld %s\n", i, r, psci_ret_name(r));
            errors++;
        }
    }
    uint64_t limit = read_cntfrq() * TIMEOUT_SEC;
    if (!wait_for(&started, n - 1, limit)) {
        print("smp-mmu: ERROR: only %u of %u cpus started\n", 1 + started, n);
        errors++;
    }
    unsigned workers = 1 + started;
    smp_mb();
    go = 1;
    spin_work(&counter);
    if (!wait_for(&done, workers - 1, limit)) {
        print("smp-mmu: ERROR: only %u of %u secondaries finished\n", done, workers - 1);
        errors++;
    }

    unsigned sent = 0, got = 0;
    for (unsigned r = 0; r < ROUNDS; r++)
        for (unsigned i = 1; i < workers; i++) {
            uint32_t want = received[i] + 1;
            gic_send_sgi(i, SGI);
            sent++;
            if (wait_for(&received[i], want, limit))
                got++;
            else
                print("smp-mmu: ERROR: SGI %u to cpu %u (round %u) not taken\n", SGI, i, r);
        }
    stop = 1;

    uint64_t c = counter, e = (uint64_t)n * ITER;
    int ok = c == e && mmu_count == n && got == sent && sent == ROUNDS * (n - 1) &&
             !irq_tally.unexpected && !errors;
    print("smp-mmu: cpus=%u mmu_on=%u count=%lu expected=%lu ipis=%u/%u ok=%d\n", n,
          (unsigned)mmu_count, c, e, got, sent, ok);
    return ok ? 0 : 1;
}
