/*
 * eoi: acknowledge + end of interrupt through the (virtual) CPU interface,
 * which under a hypervisor with a vGIC completes the interrupt without a trap.
 *
 * With IRQs masked at the PE (PSTATE.I = 1), each iteration sends SGI 1 to
 * this CPU and waits until the CPU interface reports it pending (GICC_HPPIR /
 * ICC_HPPIR1_EL1), then times exactly
 *   GICv2:  isb; mrs t0, cntvct_el0; ldr w1, [GICC_IAR]; str w1, [GICC_EOIR];
 *           isb; mrs t1, cntvct_el0
 *   GICv3:  isb; mrs t0, cntvct_el0; mrs x1, ICC_IAR1_EL1; msr ICC_EOIR1_EL1, x1;
 *           isb; mrs t1, cntvct_el0
 * and a baseline with the two GIC accesses replaced:
 *   GICv2:  by the same ldr/str to two words of RAM,
 *   GICv3:  by two nops (a system register access has no plain stand-in),
 * so (t1 - t0) - (baseline) is the cost of the two GIC accesses beyond that
 * of an ordinary instruction.  Both sums run over ITER iterations:
 *   avg_cycles = round((sum(t) - sum(baseline)) * cycles_per_tick / ITER)
 * Every acknowledge must return SGI 1 (IAR[9:0] == 1).
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP      16
#define SGI         1u
#define PRIO        0xA0u
#define WAIT_POLLS  100000

static volatile uint32_t ram_words[2];
static int v3;

static uint64_t timed_ack_eoi(uint32_t *iar)
{
    uint64_t t0, t1, v;
    if (v3) {
        __asm__ volatile(
            "isb\n\t"
            "mrs    %[t0], cntvct_el0\n\t"
            "mrs    %[v], S3_0_C12_C12_0\n\t"       /* ICC_IAR1_EL1 */
            "msr    S3_0_C12_C12_1, %[v]\n\t"       /* ICC_EOIR1_EL1 */
            "isb\n\t"
            "mrs    %[t1], cntvct_el0\n"
            : [t0] "=&r"(t0), [t1] "=&r"(t1), [v] "=&r"(v)
            :
            : "memory");
    } else {
        uint64_t cpu = gic_cpu_base();
        __asm__ volatile(
            "isb\n\t"
            "mrs    %[t0], cntvct_el0\n\t"
            "ldr    %w[v], [%[iar]]\n\t"            /* GICC_IAR */
            "str    %w[v], [%[eoir]]\n\t"           /* GICC_EOIR */
            "isb\n\t"
            "mrs    %[t1], cntvct_el0\n"
            : [t0] "=&r"(t0), [t1] "=&r"(t1), [v] "=&r"(v)
            : [iar] "r"(cpu + 0x0C), [eoir] "r"(cpu + 0x10)
            : "memory");
    }
    *iar = (uint32_t)v;
    return t1 - t0;
}

static uint64_t timed_baseline(void)
{
    uint64_t t0, t1, v;
    if (v3) {
        __asm__ volatile(
            "isb\n\t"
            "mrs    %[t0], cntvct_el0\n\t"
            "nop\n\t"
            "nop\n\t"
            "isb\n\t"
            "mrs    %[t1], cntvct_el0\n"
            : [t0] "=&r"(t0), [t1] "=&r"(t1)
            :
            : "memory");
    } else {
        __asm__ volatile(
            "isb\n\t"
            "mrs    %[t0], cntvct_el0\n\t"
            "ldr    %w[v], [%[a]]\n\t"
            "str    %w[v], [%[b]]\n\t"
            "isb\n\t"
            "mrs    %[t1], cntvct_el0\n"
            : [t0] "=&r"(t0), [t1] "=&r"(t1), [v] "=&r"(v)
            : [a] "r"(&ram_words[0]), [b] "r"(&ram_words[1])
            : "memory");
    }
    return t1 - t0;
}

/* Make SGI pending for this CPU and wait until the CPU interface shows it. */
static int pend_sgi(void)
{
    gic_send_sgi_self(SGI);
    for (int i = 0; i < WAIT_POLLS; i++)
        if (GIC_INTID(gic_hppir()) == SGI)
            return 1;
    return 0;
}

int main(void)
{
    local_irq_disable();
    uint64_t cpt = cycles_per_tick();
    gic_init();
    v3 = gic_version() == 3;
    gic_set_priority(SGI, PRIO);
    gic_enable_irq(SGI);

    uint64_t t = 0, b = 0;
    uint32_t ok = 0, bad = 0, last_bad = 0;
    for (int i = 0; i < WARMUP + ITER; i++) {
        if (!pend_sgi()) {
            print("eoi: ERROR: SGI %u not pending at the CPU interface after %d polls "
                  "(HPPIR=0x%x, iteration %d)\n", SGI, WAIT_POLLS, gic_hppir(), i);
            return 1;
        }
        uint32_t iar;
        uint64_t dt = timed_ack_eoi(&iar);
        uint64_t db = timed_baseline();
        if (GIC_INTID(iar) != SGI) {
            bad++;
            last_bad = iar;
        }
        if (i < WARMUP)
            continue;
        t += dt;
        b += db;
        ok += GIC_INTID(iar) == SGI;
    }

    int64_t dticks = (int64_t)(t - b);
    uint64_t avg = 0;
    if (dticks > 0)
        avg = ((uint64_t)dticks * cpt + ITER / 2) / ITER;
    print("eoi: gic=v%d (%s) sgi=%u acks_ok=%u loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n",
          gic_version(), gic_source(), SGI, ok, t, b, cpt);
    if (bad) {
        print("eoi: ERROR: %u acknowledges did not return SGI %u (last IAR=0x%x)\n",
              bad, SGI, last_bad);
        return 1;
    }
    print("BENCH eoi avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
