/*
 * Timed kernels shared by the single-purpose benchmark images (hypercall, eoi,
 * ipi, vmswitch) and microbench, which must measure exactly as they do: the
 * same instructions between the two counter reads, the same loops around them.
 * Images that use none of this drop it at link time (--gc-sections).
 */
#include "runtime.h"

/* ------------------------------------------------------------ hypercall */

/* Both loops clobber x0-x17 (SMCCC 1.0 allows the callee to) and x19. */
#define LOOP_CLOBBERS "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", \
    "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "x19", "cc", "memory"

uint64_t hvc_loop(uint64_t n)
{
    uint64_t t0, t1;
    __asm__ volatile(
        "mov    x19, %[n]\n\t"
        "isb\n\t"
        "mrs    %[t0], cntvct_el0\n"
        "1:\n\t"
        "movz   w0, #0x4b00, lsl #16\n\t"
        "hvc    #0\n\t"
        "subs   x19, x19, #1\n\t"
        "b.ne   1b\n\t"
        "isb\n\t"
        "mrs    %[t1], cntvct_el0\n"
        : [t0] "=&r"(t0), [t1] "=&r"(t1)
        : [n] "r"(n)
        : LOOP_CLOBBERS);
    return t1 - t0;
}

uint64_t hvc_baseline_loop(uint64_t n)
{
    uint64_t t0, t1;
    __asm__ volatile(
        "mov    x19, %[n]\n\t"
        "isb\n\t"
        "mrs    %[t0], cntvct_el0\n"
        "1:\n\t"
        "movz   w0, #0x4b00, lsl #16\n\t"
        "subs   x19, x19, #1\n\t"
        "b.ne   1b\n\t"
        "isb\n\t"
        "mrs    %[t1], cntvct_el0\n"
        : [t0] "=&r"(t0), [t1] "=&r"(t1)
        : [n] "r"(n)
        : LOOP_CLOBBERS);
    return t1 - t0;
}

/* QEMU (not armvirt) makes an hvc with a non-PSCI function ID UNDEFINED: so that
 * the images still run there, a sync handler may answer NOT_SUPPORTED for it. */
#define INSN_HVC0 0xd4000002u
volatile uint64_t undef_hvcs;

int hvc_undef_as_not_supported(struct exc_frame *f)
{
    if (ESR_EC(f->esr) == EC_UNKNOWN && *(const uint32_t *)(uintptr_t)f->elr == INSN_HVC0) {
        f->x[0] = PSCI_NOT_SUPPORTED;
        f->elr += 4;
        undef_hvcs++;
        return 1;
    }
    return 0;
}

uint64_t bench_loop_avg(uint64_t t, uint64_t b, unsigned n, uint64_t cpt)
{
    int64_t d = (int64_t)(t - b);
    return d > 0 ? ((uint64_t)d * cpt + n / 2) / n : 0;
}

/* ------------------------------------------------- timed loops of one insn */

/* n times `insn` between two CNTVCT reads (isb; mrs), with x1 = v and x2 = a */
#define TIMED_LOOP(insn, n, a, v, t0, t1)                                      \
    __asm__ volatile("mov    x19, %[n_]\n\t"                                   \
                     "mov    x2, %[a_]\n\t"                                    \
                     "mov    x1, %[v_]\n\t"                                    \
                     "isb\n\t"                                                 \
                     "mrs    %[t0_], cntvct_el0\n"                              \
                     "1:\n\t"                                                  \
                     insn "\n\t"                                               \
                     "subs   x19, x19, #1\n\t"                                 \
                     "b.ne   1b\n\t"                                           \
                     "isb\n\t"                                                 \
                     "mrs    %[t1_], cntvct_el0\n"                              \
                     : [t0_] "=&r"(t0), [t1_] "=&r"(t1)                        \
                     : [n_] "r"((uint64_t)(n)), [a_] "r"((uint64_t)(a)), [v_] "r"((uint64_t)(v)) \
                     : "x1", "x2", "x19", "cc", "memory")

uint64_t mmio_write32_loop(uint64_t n, uint64_t addr, uint32_t value)
{
    uint64_t t0, t1;
    TIMED_LOOP("str    w1, [x2]", n, addr, value, t0, t1);
    return t1 - t0;
}

uint64_t mmio_read_bench(uint64_t addr, unsigned warmup, unsigned n, uint64_t cpt, uint32_t *last,
                         uint64_t *t, uint64_t *b)
{
    mmio_read32_loop(warmup, addr, last);
    mmio_baseline_loop(warmup, addr);
    *t = mmio_read32_loop(n, addr, last);
    *b = mmio_baseline_loop(n, addr);
    return bench_loop_avg(*t, *b, n, cpt);
}

/* ------------------------------------------------------------------ eoi */

static volatile uint32_t ram_words[2];

/* isb; mrs t0; IAR read; EOIR write; isb; mrs t1 */
static uint64_t timed_ack_eoi(int v3, uint32_t *iar)
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

/* the same pair with the GIC accesses replaced: v2 the same ldr/str on RAM,
 * v3 two nops (a system register access has no plain stand-in) */
static uint64_t timed_eoi_baseline(int v3)
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

int eoi_measure(unsigned sgi, unsigned prio, unsigned warmup, unsigned iter, struct eoi_result *r)
{
    int v3 = gic_version() == 3;
    gic_set_priority(sgi, prio);
    gic_enable_irq(sgi);
    *r = (struct eoi_result){0};
    for (unsigned i = 0; i < warmup + iter; i++) {
        gic_send_sgi_self(sgi);         /* pending at the CPU interface, IRQs masked */
        int polls = 0;
        while (GIC_INTID(gic_hppir()) != sgi && ++polls < EOI_WAIT_POLLS)
            ;
        if (polls >= EOI_WAIT_POLLS) {
            r->stuck_at = (int)i;
            return 0;
        }
        uint32_t iar;
        uint64_t dt = timed_ack_eoi(v3, &iar);
        uint64_t db = timed_eoi_baseline(v3);
        if (GIC_INTID(iar) != sgi) {
            r->bad++;
            r->last_bad = iar;
        }
        if (i < warmup)
            continue;
        r->ticks += dt;
        r->baseline += db;
        r->ok += GIC_INTID(iar) == sgi;
    }
    r->stuck_at = -1;
    return 1;
}

/* n EOIs of the spurious INTID: the write is ignored, so the loop needs no
 * interrupt pending and measures the write alone (as with a vGIC it never traps) */
uint64_t eoi_spurious_loop(uint64_t n)
{
    uint64_t t0, t1;
    if (gic_version() == 3)
        TIMED_LOOP("msr    S3_0_C12_C12_1, x1", n, 0, GIC_SPURIOUS, t0, t1);    /* ICC_EOIR1_EL1 */
    else
        TIMED_LOOP("str    w1, [x2]", n, gic_cpu_base() + 0x10, GIC_SPURIOUS, t0, t1);  /* GICC_EOIR */
    return t1 - t0;
}

uint64_t eoi_spurious_baseline_loop(uint64_t n)
{
    uint64_t t0, t1;
    if (gic_version() == 3)
        TIMED_LOOP("nop", n, 0, GIC_SPURIOUS, t0, t1);
    else
        TIMED_LOOP("str    w1, [x2]", n, (uintptr_t)&ram_words[0], GIC_SPURIOUS, t0, t1);
    return t1 - t0;
}

/* ------------------------------------------------------------------ ipi */

static volatile uint32_t ipi_ready, ipi_stop, ipi_ack;
static volatile uint64_t ipi_spins;             /* the spinning target's loop count */
static enum ipi_mode ipi_mode;
static volatile uint64_t ipi_entry;             /* the target's handler entry time */
static volatile uint32_t ipi_received, ipi_bad_source;
static unsigned ipi_sgi, ipi_prio;

static int ipi_irq(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(ipi_sgi);
    if (iar == GIC_NOT_WANTED)
        return 1;
    ipi_entry = irq_entry_ticks();
    if (gic_version() == 2 && ((iar >> 10) & 7) != 0)   /* source CPU: cpu 0 */
        ipi_bad_source++;
    ipi_received++;
    gic_eoi(iar);
    smp_mb();                   /* entry and count before the flag */
    ipi_ack = 1;
    return 1;
}

static void ipi_target(unsigned cpu)
{
    (void)cpu;
    gic_init();                 /* this CPU's interface (v3: its redistributor) */
    gic_set_priority(ipi_sgi, ipi_prio);
    gic_enable_irq(ipi_sgi);
    smp_mb();
    ipi_ready = 1;
    local_irq_enable();
    if (ipi_mode == IPI_SPIN)
        while (!ipi_stop)
            ipi_spins++;
    else
        while (!ipi_stop)
            __asm__ volatile("wfi" ::: "memory");
    local_irq_disable();
}

/* one SGI; returns t0 (CNTVCT just before the send instruction) */
static uint64_t ipi_send(uint64_t val, uintptr_t sgir, int v3)
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

int ipi_measure(unsigned target, unsigned sgi, unsigned prio, unsigned warmup, unsigned iter,
                enum ipi_mode mode, struct ipi_result *r)
{
    *r = (struct ipi_result){.min = INT64_MAX, .max = INT64_MIN};
    ipi_sgi = sgi;
    ipi_prio = prio;
    ipi_mode = mode;
    ipi_ready = ipi_stop = 0;
    ipi_received = ipi_bad_source = 0;
    irq_handler = ipi_irq;
    secondary_main = ipi_target;
    r->cpu_on = smp_cpu_on(target);
    uint64_t t = read_cntvct(), limit = read_cntfrq() * IPI_TIMEOUT_SEC;
    while (!ipi_ready && read_cntvct() - t < limit)
        ;
    if (r->cpu_on != PSCI_SUCCESS || !ipi_ready)
        return 0;
    smp_mb();

    int v3 = gic_version() == 3;
    uint64_t val = gic_sgi_value(target, sgi);
    uintptr_t sgir = gic_dist_base() + 0xF00;
    uint64_t per_wait = read_cntfrq() / 10;     /* 100 ms for one IPI */
    uint64_t settle = read_cntfrq() / 50000;    /* 20 us for the target to sleep again */
    for (unsigned i = 0; i < warmup + iter; i++) {
        ipi_ack = 0;
        uint64_t t0 = ipi_send(val, sgir, v3);
        r->sent++;
        while (!ipi_ack && read_cntvct() - t0 < per_wait)
            ;
        if (!ipi_ack) {
            r->lost++;
            continue;
        }
        smp_mb();
        if (mode == IPI_SPIN) {
            /* the next SGI once the target spins again: its loop count moves */
            uint64_t spins = ipi_spins;
            while (ipi_spins == spins && read_cntvct() - t0 < per_wait)
                ;
        } else {
            /* Let the target get back to sleep before the next SGI: after its ack it
             * still returns from the handler and traps on WFI (and, without a vGIC,
             * its EOI traps first).  An SGI sent meanwhile would also time that work,
             * which the IPI path (to a sleeping target) does not include. */
            for (uint64_t s = read_cntvct(); read_cntvct() - s < settle;)
                ;
        }
        int64_t l = (int64_t)(ipi_entry - t0);
        if (i < warmup)
            continue;
        if (l < 0)
            r->negative++;
        r->sum += (uint64_t)(l < 0 ? 0 : l);
        r->min = l < r->min ? l : r->min;
        r->max = l > r->max ? l : r->max;
    }
    r->received = ipi_received;
    r->bad_source = ipi_bad_source;
    r->counted = iter - (r->lost > iter ? iter : r->lost);

    /* let the target leave its loop (CPU_OFF); not part of the result.  A spinning
     * target sees the flag; one in WFI needs an SGI to look at it. */
    ipi_stop = 1;
    t = read_cntvct();
    do {
        if (mode == IPI_WFI)
            gic_send_sgi(target, sgi);
        for (uint64_t w = read_cntvct(); read_cntvct() - w < per_wait / 100;)
            ;
    } while (smp_affinity_info(target) != PSCI_AFF_OFF && read_cntvct() - t < limit);
    r->target_aff = smp_affinity_info(target);
    return 1;
}

/* ------------------------------------------------------------ vm_switch */

uint64_t vm_switch_call(uint64_t *t1)
{
    register uint64_t x0 __asm__("x0");
    uint64_t after;
    __asm__ volatile("movz  w0, #0x4b00, lsl #16\n\t"
                     "movk  w0, #0x0010\n\t"
                     "isb\n\t"
                     "mrs   x1, cntvct_el0\n\t"
                     "hvc   #0\n\t"
                     "isb\n\t"
                     "mrs   %[t1], cntvct_el0"
                     : "=r"(x0), [t1] "=&r"(after)
                     :
                     : "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11",
                       "x12", "x13", "x14", "x15", "x16", "x17", "memory");
    *t1 = after;
    return x0;
}
