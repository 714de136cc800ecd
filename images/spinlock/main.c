/*
 * spinlock: mutual exclusion across all CPUs of the DTB.
 *
 * Every CPU (the boot CPU too) waits for a common start flag, then ITER times
 * takes an LDAXR/STLXR test-and-set spinlock (runtime.h spin_lock, released
 * with STLR), increments a shared 64-bit counter with a plain, non-atomic
 * load / add / store, and releases the lock.  Were the lock broken (two CPUs
 * inside at once, or a missing barrier), increments would be lost and the
 * final count would fall short of cpus * ITER.  The secondaries report done
 * with an LDXR/STLXR atomic add; the boot CPU waits for them (bounded) and
 * prints
 *     spinlock: cpus=<n> iterations=<ITER> count=<c> expected=<n*ITER> ok=<0|1>
 * Exits 0 only if ok.
 */
#include "runtime.h"

#ifndef ITER
#define ITER 10000
#endif
#define TIMEOUT_SEC 30  /* CNTVCT seconds; the run itself takes far less */

static spinlock_t lock;
static volatile uint64_t counter;
static volatile uint32_t started, go, done;

static void work(void)
{
    while (!go)
        ;
    for (unsigned i = 0; i < ITER; i++) {
        spin_lock(&lock);
        uint64_t c = counter;           /* non-atomic read-modify-write */
        counter = c + 1;
        spin_unlock(&lock);
    }
}

static void secondary(unsigned cpu)
{
    (void)cpu;
    atomic_add_return(&started, 1);
    work();
    atomic_add_return(&done, 1);
}

int main(void)
{
    unsigned n = smp_cpu_count();
    int errors = 0;
    print("spinlock: cpus=%u (%s) iterations=%u per cpu\n", n, smp_cpu_source(), (unsigned)ITER);

    secondary_main = secondary;
    for (unsigned i = 1; i < n; i++) {
        int64_t r = smp_cpu_on(i);
        if (r != PSCI_SUCCESS) {
            print("spinlock: ERROR: CPU_ON cpu %u returned %ld %s\n", i, r, psci_ret_name(r));
            errors++;
        }
    }
    /* start together, so that the CPUs contend for the lock */
    uint64_t t0 = read_cntvct(), limit = read_cntfrq() * TIMEOUT_SEC;
    while (started != n - 1 && read_cntvct() - t0 < limit)
        ;
    unsigned workers = 1 + started;
    if (workers != n) {
        print("spinlock: ERROR: only %u of %u cpus started\n", workers, n);
        errors++;
    }
    smp_mb();
    go = 1;
    work();
    t0 = read_cntvct();
    while (done != workers - 1 && read_cntvct() - t0 < limit)
        ;
    smp_mb();
    if (done != workers - 1) {
        print("spinlock: ERROR: only %u of %u secondaries finished\n", done, workers - 1);
        errors++;
    }

    uint64_t c = counter, e = (uint64_t)n * ITER;
    int ok = c == e && !errors;
    print("spinlock: cpus=%u iterations=%u count=%lu expected=%lu ok=%d\n", n, (unsigned)ITER,
          c, e, ok);
    return ok ? 0 : 1;
}
