/*
 * microbench: the single-purpose benchmark images in one guest, in the style
 * of kvm-unit-tests' arm/micro-bench, for 1 or more vCPUs (ipi needs 2).
 *
 * Each benchmark uses the method of the image it comes from, unchanged (same
 * loops, same baseline subtraction, same rounding), and prints one line
 *     BENCH <name> avg_cycles=<n> iterations=<k>
 * with n in CPU cycles (CNTVCT ticks * cycles_per_tick), in this order:
 *   hypercall    HVC 0x4b000000 loop minus the loop without the hvc (hypercall)
 *   mmio_kernel  32-bit write to the bench-io DOORBELL register, which the
 *                host completes in its kernel with no device model (an
 *                ioeventfd nobody waits on; ATC'17 "I/O kernel"), loop
 *                minus baseline (mmio_write32_loop/mmio_baseline_loop)
 *   mmio_user    the same for a read of virtio-mmio transport 0's DeviceID
 *                (0x0a000008: the user-space device model; mmio-user)
 *   gic_trap     the same for a read of GICD_IIDR (distributor emulation in
 *                the kernel; gic-trap)
 *   eoi          a write of 1023 (spurious, ignored) to GICC_EOIR /
 *                ICC_EOIR1_EL1, loop minus baseline (eoi)
 *   ack_eoi      acknowledge + EOI of a pending SGI 1, IRQs masked, each pair
 *                timed minus a baseline pair (eoi)
 *   ipi          SGI 2 from cpu 0 to cpu 1, both running: cpu 1 spins with
 *                IRQs unmasked; t0 = CNTVCT before the SGI write, sample = cpu
 *                1's vector entry - t0 (ISCA'16 "virtual IPI"; ipi); skipped
 *                with one CPU
 *   ipi_wfi      the same with cpu 1 waiting in WFI: the wake-up path (ipi)
 *   io_out       bench-io notify: t0 = CNTVCT (isb; mrs), str to NOTIFY, then
 *                sample = SEEN - t0, the counter value at which the virtual
 *                device had the notify (ISCA'16 I/O latency out).  No baseline:
 *                the sample contains the isb/mrs and the str, as the model's
 *                path table does.
 *   io_in        bench-io event: EVENT_AT = CNTVCT + IO_DELAY, then wait in
 *                `1: wfi; b 1b` (asleep, as a guest waiting for its I/O);
 *                sample = handler entry (x18, the IRQ vector's first
 *                instruction) - SENT, the counter value at which the back end
 *                sent the event (as irq-latency does for the timer)
 *   vm_switch    hypercall 0x4b000010 with x1 = CNTVCT: the hypervisor
 *                switches to the peer VM on this pCPU, and the call returns
 *                the x1 of the peer's next call; sample = our CNTVCT right
 *                after the return - that value: one switch, peer to us.  The
 *                first of the WARMUP_VM_SWITCH untimed calls is made at boot,
 *                before any other benchmark, so that a peer VM sharing the
 *                pCPU waits in its call (not runnable) while they run.
 * Loop benchmarks: avg = round((loop - baseline) * cycles_per_tick / ITER)
 * (0 if negative); per-operation ones: avg = round(sum * cycles_per_tick / k).
 * A benchmark that cannot run prints `BENCH <name> skipped (<why>)`: ipi and
 * ipi_wfi with one CPU, mmio_kernel/io_out/io_in without the bench-io device (ID register
 * != "AVB0"), vm_switch when its first call returns -1 (no peer VM).
 *
 * With the word `vm-peer` in /chosen/bootargs the image runs no benchmark: it
 * is vm_switch's partner VM and calls 0x4b000010 (x1 = CNTVCT, the same code
 * as the timed calls) until the call returns -1 (the other VM has powered
 * off), then prints `microbench: vm-peer done after <n> calls`, n counting
 * the last call too (so n = the other VM's WARMUP_VM_SWITCH + ITER_VM_SWITCH
 * calls), and exits 0.
 *
 * Benchmark names in /chosen/bootargs (`-append "io_out io_in"`) run only those,
 * in the order below (`ipi` runs ipi and ipi_wfi); with none named, all run.
 *
 * Exits 0, or 1 after `microbench: ERROR:` lines if a check failed (a wrong
 * value read, a lost or unexpected interrupt, a spurious acknowledge, a
 * negative sample, the peer VM leaving before the end).
 */
#include "runtime.h"

#ifndef ITER_HYPERCALL
#define ITER_HYPERCALL  1000
#endif
#ifndef ITER_MMIO                       /* mmio_kernel, mmio_user, gic_trap */
#define ITER_MMIO       1000
#endif
#ifndef ITER_EOI
#define ITER_EOI        1000
#endif
#ifndef ITER_IPI
#define ITER_IPI        100
#endif
#ifndef ITER_IO                         /* io_out, io_in */
#define ITER_IO         100
#endif
#ifndef ITER_VM_SWITCH
#define ITER_VM_SWITCH  100
#endif
#define WARMUP_LOOP     16              /* hypercall, mmio_*, gic_trap, eoi */
#define WARMUP_IPI      10
#define WARMUP_IO       4
#define WARMUP_VM_SWITCH 4

#define PRIO            0xA0u
#define SGI_EOI         1u
#define SGI_IPI         2u
#define IPI_TARGET      1u

/* bench-io: armvirt's in-kernel benchmark device (DTB node "armvirt,bench-io") */
#define BENCH_IO_COMPAT     "armvirt,bench-io"
#define BENCH_IO_BASE       0x0b000000UL
#define BENCH_IO_INTID      80u         /* SPI 48, level */
#define BENCH_IO_ID_VALUE   0x41564230u /* "AVB0" */
#define IO_ID               0x00u       /* RO */
#define IO_NOTIFY           0x04u       /* WO: back end records CNTVCT in SEEN */
#define IO_SEEN_LO          0x08u       /* RO */
#define IO_SEEN_HI          0x0Cu
#define IO_EVENT_AT_LO      0x10u       /* WO; writing HI arms the event */
#define IO_EVENT_AT_HI      0x14u
#define IO_SENT_LO          0x18u       /* RO: CNTVCT at which the event was sent */
#define IO_SENT_HI          0x1Cu
#define IO_ACK              0x20u       /* WO: deasserts the interrupt */
#define IO_DOORBELL         0x24u       /* WO: an ioeventfd nobody waits on (mmio_kernel) */
#ifndef IO_DELAY
#define IO_DELAY            1000u       /* ticks: well past the two arming MMIO exits */
#endif

#define VM_SWITCH_CALL      0x4b000010u
#define GICD_ITARGETSR      0x800u      /* GICv2 */

static uint64_t cpt;
static int errors;

#define ERROR(...) do { print("microbench: ERROR: " __VA_ARGS__); errors++; } while (0)

static void bench(const char *name, uint64_t avg, unsigned iterations)
{
    print("BENCH %s avg_cycles=%lu iterations=%u\n", name, avg, iterations);
}

/* round(sum * cycles_per_tick / n) */
static uint64_t sum_avg(uint64_t sum, unsigned n)
{
    return n ? (sum * cpt + n / 2) / n : 0;
}

/* ------------------------------------------------------------ exceptions */

/* QEMU (not armvirt) makes an hvc with a non-PSCI function ID UNDEFINED: emulate
 * NOT_SUPPORTED for it, as images/hypercall does.  A data abort while probing
 * for bench-io (no device there) skips the load and marks the probe failed. */
static volatile int probing, probe_faulted;

static int sync(struct exc_frame *f)
{
    if (hvc_undef_as_not_supported(f))
        return 1;
    if (probing && ESR_EC(f->esr) == EC_DABT_CUR) {
        probe_faulted = 1;
        f->elr += 4;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ hypercall */

static void bench_hypercall(void)
{
    uint64_t ret = psci_call(ARMVIRT_BENCH_CALL, 0, 0, 0);
    if (ret != PSCI_NOT_SUPPORTED)
        ERROR("hypercall 0x%x returned 0x%lx, expected -1\n", ARMVIRT_BENCH_CALL, ret);
    hvc_loop(WARMUP_LOOP);
    hvc_baseline_loop(WARMUP_LOOP);
    uint64_t t = hvc_loop(ITER_HYPERCALL);
    uint64_t b = hvc_baseline_loop(ITER_HYPERCALL);
    print("microbench: hypercall: ret=%ld loop_ticks=%lu baseline_ticks=%lu\n", (int64_t)ret, t, b);
    bench("hypercall", bench_loop_avg(t, b, ITER_HYPERCALL, cpt), ITER_HYPERCALL);
}

/* ------------------------------------------------ MMIO reads (loop - baseline) */

static int io_present;
static uint64_t io_base = BENCH_IO_BASE;
static unsigned io_intid = BENCH_IO_INTID;
static const char *io_source = "default";
static uint32_t io_id;

/* Find bench-io (DTB node, else the default base) and read its ID register;
 * an abort (no device there) or another value means it is absent. */
static void io_detect(void)
{
    uint64_t base;
    uint32_t intid, v;
    if (fdt_find_compatible(BENCH_IO_COMPAT, &base, &intid)) {
        io_base = base;
        if (intid)
            io_intid = intid;
        io_source = "dtb";
    }
    probe_faulted = 0;
    probing = 1;
    smp_mb();
    __asm__ volatile("mov   %w0, #0xffffffff\n\t"
                     "ldr   %w0, [%1]"
                     : "=&r"(v) : "r"(io_base + IO_ID) : "memory");
    smp_mb();
    probing = 0;
    io_id = v;
    io_present = !probe_faulted && v == BENCH_IO_ID_VALUE;
    if (io_present)
        print("microbench: bench-io at 0x%lx intid=%u (%s) ID=0x%x\n", io_base, io_intid,
              io_source, v);
    else if (probe_faulted)
        print("microbench: no bench-io device (reading 0x%lx (%s) aborted)\n", io_base + IO_ID,
              io_source);
    else
        print("microbench: no bench-io device (ID at 0x%lx (%s) = 0x%x, expected 0x%x)\n",
              io_base + IO_ID, io_source, v, BENCH_IO_ID_VALUE);
}

static void bench_mmio_kernel(void)
{
    if (!io_present) {
        print("BENCH mmio_kernel skipped (no bench-io device)\n");
        return;
    }
    uint64_t addr = io_base + IO_DOORBELL;
    mmio_write32_loop(WARMUP_LOOP, addr, 1);
    mmio_baseline_loop(WARMUP_LOOP, addr);
    uint64_t t = mmio_write32_loop(ITER_MMIO, addr, 1);
    uint64_t b = mmio_baseline_loop(ITER_MMIO, addr);
    print("microbench: mmio_kernel: DOORBELL write loop_ticks=%lu baseline_ticks=%lu\n", t, b);
    bench("mmio_kernel", bench_loop_avg(t, b, ITER_MMIO, cpt), ITER_MMIO);
}

static void bench_mmio_user(void)
{
    uint32_t id, magic = mmio_read32(VIRTIO_MMIO_BASE + VIRTIO_MMIO_MAGIC);
    if (magic != VIRTIO_MMIO_MAGIC_VALUE) {
        ERROR("mmio_user: virtio-mmio MagicValue at 0x%lx is 0x%x, expected 0x%x\n",
              VIRTIO_MMIO_BASE, magic, VIRTIO_MMIO_MAGIC_VALUE);
        print("BENCH mmio_user skipped (no virtio-mmio transport)\n");
        return;
    }
    uint64_t t, b;
    uint64_t avg = mmio_read_bench(VIRTIO_MMIO_BASE + VIRTIO_MMIO_DEVICE_ID, WARMUP_LOOP, ITER_MMIO, cpt, &id, &t, &b);
    print("microbench: mmio_user: virtio-mmio DeviceID=%u loop_ticks=%lu baseline_ticks=%lu\n", id,
          t, b);
    bench("mmio_user", avg, ITER_MMIO);
}

#define IIDR_IMPLEMENTER_ARM 0x43Bu

static void bench_gic_trap(void)
{
    uint32_t iidr;
    uint64_t t, b;
    uint64_t avg = mmio_read_bench(gic_dist_base() + GICD_IIDR, WARMUP_LOOP, ITER_MMIO, cpt, &iidr, &t, &b);
    print("microbench: gic_trap: GICD_IIDR=0x%x loop_ticks=%lu baseline_ticks=%lu\n", iidr, t, b);
    if ((iidr & 0xfff) != IIDR_IMPLEMENTER_ARM)
        ERROR("gic_trap: GICD_IIDR=0x%x: implementer 0x%x, expected ARM (0x%x)\n", iidr,
              iidr & 0xfff, IIDR_IMPLEMENTER_ARM);
    bench("gic_trap", avg, ITER_MMIO);
}

/* ------------------------------------------------------------------ eoi */

static void bench_eoi(void)
{
    eoi_spurious_loop(WARMUP_LOOP);
    eoi_spurious_baseline_loop(WARMUP_LOOP);
    uint64_t t = eoi_spurious_loop(ITER_EOI);
    uint64_t b = eoi_spurious_baseline_loop(ITER_EOI);
    print("microbench: eoi: intid=1023 loop_ticks=%lu baseline_ticks=%lu\n", t, b);
    bench("eoi", bench_loop_avg(t, b, ITER_EOI, cpt), ITER_EOI);
}

static void bench_ack_eoi(void)
{
    struct eoi_result r;
    if (!eoi_measure(SGI_EOI, PRIO, WARMUP_LOOP, ITER_EOI, &r)) {
        ERROR("ack_eoi: SGI %u not pending at the CPU interface after %d polls "
              "(HPPIR=0x%x, iteration %d)\n", SGI_EOI, EOI_WAIT_POLLS, gic_hppir(), r.stuck_at);
        print("BENCH ack_eoi skipped (SGI never pending)\n");
        return;
    }
    print("microbench: ack_eoi: sgi=%u acks_ok=%u loop_ticks=%lu baseline_ticks=%lu\n", SGI_EOI,
          r.ok, r.ticks, r.baseline);
    if (r.bad)
        ERROR("ack_eoi: %u acknowledges did not return SGI %u (last IAR=0x%x)\n", r.bad, SGI_EOI,
              r.last_bad);
    bench("ack_eoi", bench_loop_avg(r.ticks, r.baseline, ITER_EOI, cpt), ITER_EOI);
}

/* ------------------------------------------------------------------ ipi */

/* one IPI benchmark: `name` with the target spinning or in WFI */
static void bench_ipi_mode(const char *name, enum ipi_mode mode)
{
    struct ipi_result r;
    if (!ipi_measure(IPI_TARGET, SGI_IPI, PRIO, WARMUP_IPI, ITER_IPI, mode, &r)) {
        ERROR("%s: cpu %u did not come up (CPU_ON returned %ld %s)\n", name, IPI_TARGET, r.cpu_on,
              psci_ret_name(r.cpu_on));
        print("BENCH %s skipped (cpu %u did not come up)\n", name, IPI_TARGET);
        return;
    }
    print("microbench: %s: sgi=%u cpu 0 -> cpu %u (%s) sent=%u received=%u lost=%u min_ticks=%ld "
          "max_ticks=%ld sum_ticks=%lu cpu%u_off=%u\n", name, SGI_IPI, IPI_TARGET,
          mode == IPI_SPIN ? "spinning" : "in WFI", r.sent, r.received, r.lost, r.min, r.max, r.sum,
          IPI_TARGET, r.target_aff == PSCI_AFF_OFF ? 1u : 0u);
    if (r.lost || r.received != r.sent)
        ERROR("%s: %u of %u SGIs did not arrive\n", name, r.sent - r.received, r.sent);
    if (r.bad_source)
        ERROR("%s: %u SGIs with a source CPU other than 0\n", name, r.bad_source);
    if (r.negative)
        ERROR("%s: %u handler entries before their send (CNTVCT skew between CPUs)\n", name,
              r.negative);
    if (r.target_aff != PSCI_AFF_OFF)
        ERROR("%s: cpu %u did not turn off (AFFINITY_INFO=%ld)\n", name, IPI_TARGET, r.target_aff);
    bench(name, sum_avg(r.sum, r.counted), r.counted);
}

static void bench_ipi(void)
{
    if (smp_cpu_count() < 2) {
        print("BENCH ipi skipped (needs 2 CPUs)\n");
        print("BENCH ipi_wfi skipped (needs 2 CPUs)\n");
        return;
    }
    bench_ipi_mode("ipi", IPI_SPIN);
    bench_ipi_mode("ipi_wfi", IPI_WFI);
}

/* --------------------------------------------------------------- io_out */

/* t0 = CNTVCT (isb; mrs), at once the notify; then the back end's SEEN */
static int64_t io_out_one(void)
{
    uint64_t t0;
    __asm__ volatile("isb\n\t"
                     "mrs   %[t0], cntvct_el0\n\t"
                     "str   %w[one], [%[notify]]"
                     : [t0] "=&r"(t0)
                     : [one] "r"(1u), [notify] "r"(io_base + IO_NOTIFY)
                     : "memory");
    uint64_t lo = mmio_read32(io_base + IO_SEEN_LO);
    uint64_t hi = mmio_read32(io_base + IO_SEEN_HI);
    return (int64_t)((hi << 32 | lo) - t0);
}

static void bench_io_out(void)
{
    if (!io_present) {
        print("BENCH io_out skipped (no bench-io device)\n");
        return;
    }
    uint64_t sum = 0;
    int64_t lmin = INT64_MAX, lmax = INT64_MIN;
    unsigned negative = 0;
    for (unsigned i = 0; i < WARMUP_IO + ITER_IO; i++) {
        int64_t l = io_out_one();
        if (i < WARMUP_IO)
            continue;
        if (l < 0)
            negative++;
        sum += (uint64_t)(l < 0 ? 0 : l);
        lmin = l < lmin ? l : lmin;
        lmax = l > lmax ? l : lmax;
    }
    print("microbench: io_out: min_ticks=%ld max_ticks=%ld sum_ticks=%lu\n", lmin, lmax, sum);
    if (negative)
        ERROR("io_out: %u notifies seen before they were sent\n", negative);
    bench("io_out", sum_avg(sum, ITER_IO), ITER_IO);
}

/* ---------------------------------------------------------------- io_in */

static volatile uint64_t io_spin_pc, io_entry;
static volatile uint32_t io_fired, io_retries, io_irqs;

static void io_arm(uint64_t at)
{
    mmio_write32(io_base + IO_EVENT_AT_LO, (uint32_t)at);
    mmio_write32(io_base + IO_EVENT_AT_HI, (uint32_t)(at >> 32));
}

static uint64_t io_sent(void)
{
    uint64_t lo = mmio_read32(io_base + IO_SENT_LO);
    uint64_t hi = mmio_read32(io_base + IO_SENT_HI);
    return hi << 32 | lo;
}

/* acknowledge, ACK the device (its line drops), EOI; ELR at the `b 1b` after
 * the WFI (the WFI completed: the event woke the CPU): record the entry time
 * (x18 of the vector) and return past it.  An event taken anywhere else is not
 * counted: re-arm IO_DELAY ticks later, and the WFI waits for that one. */
static int io_irq(struct exc_frame *f)
{
    uint32_t iar = gic_ack_wanted(io_intid);
    if (iar == GIC_NOT_WANTED)
        return 1;
    uint64_t entry = irq_entry_ticks();
    mmio_write32(io_base + IO_ACK, 1);
    gic_eoi(iar);
    io_irqs++;
    if (f->elr == io_spin_pc) {
        io_entry = entry;
        f->elr += 4;                    /* return past the `b .` */
        io_fired = 1;
    } else {
        io_retries++;
        io_arm(read_cntvct() + IO_DELAY);
    }
    return 1;
}

/* EVENT_AT = CNTVCT + IO_DELAY (writing HI arms it), then WFI until the
 * handler moves ELR past the loop's branch; returns EVENT_AT */
static uint64_t io_in_one(void)
{
    uint64_t at;
    io_fired = 0;
    __asm__ volatile(
        "adr    x0, 2f\n\t"
        "str    x0, [%[pc]]\n\t"
        "isb\n\t"
        "mrs    %[at], cntvct_el0\n\t"
        "add    %[at], %[at], %[delay]\n\t"
        "str    %w[at], [%[lo]]\n\t"
        "lsr    x0, %[at], #32\n\t"
        "str    w0, [%[hi]]\n"
        "1:\n\t"
        "wfi\n"
        "2:\n\t"
        "b      1b\n"                   /* the handler returns to the next instruction */
        : [at] "=&r"(at)
        : [pc] "r"(&io_spin_pc), [delay] "r"((uint64_t)IO_DELAY),
          [lo] "r"(io_base + IO_EVENT_AT_LO), [hi] "r"(io_base + IO_EVENT_AT_HI)
        : "x0", "memory");
    return at;
}

/* SPI io_intid to this CPU (v2: its GICD_ITARGETSR byte; v3: gic_enable_irq
 * writes GICD_IROUTER), priority PRIO, enabled */
static void io_enable_irq(void)
{
    if (gic_version() == 2) {
        uintptr_t reg = gic_dist_base() + GICD_ITARGETSR + (io_intid & ~3u);
        unsigned shift = 8 * (io_intid % 4);
        uint32_t v = mmio_read32(reg) & ~(0xffu << shift);
        mmio_write32(reg, v | (1u << cpu_id()) << shift);
    }
    gic_set_priority(io_intid, PRIO);
    gic_enable_irq(io_intid);
}

static void bench_io_in(void)
{
    if (!io_present) {
        print("BENCH io_in skipped (no bench-io device)\n");
        return;
    }
    irq_handler = io_irq;
    io_enable_irq();
    local_irq_enable();
    uint64_t sum = 0;
    int64_t lmin = INT64_MAX, lmax = INT64_MIN, late_min = INT64_MAX, late_max = INT64_MIN;
    unsigned negative = 0;
    for (unsigned i = 0; i < WARMUP_IO + ITER_IO; i++) {
        uint64_t at = io_in_one();
        uint64_t sent = io_sent();
        int64_t l = (int64_t)(io_entry - sent);
        int64_t late = (int64_t)(sent - at);    /* 0 unless re-armed / sent late */
        if (i < WARMUP_IO)
            continue;
        if (l < 0)
            negative++;
        sum += (uint64_t)(l < 0 ? 0 : l);
        lmin = l < lmin ? l : lmin;
        lmax = l > lmax ? l : lmax;
        late_min = late < late_min ? late : late_min;
        late_max = late > late_max ? late : late_max;
    }
    local_irq_disable();
    unsigned irqs = io_irqs, want = WARMUP_IO + ITER_IO + io_retries;
    print("microbench: io_in: intid=%u delay=%u ticks min_ticks=%ld max_ticks=%ld sum_ticks=%lu "
          "irqs=%u retries=%u sent-event_at=[%ld,%ld]\n", io_intid, IO_DELAY, lmin, lmax, sum, irqs,
          io_retries, late_min, late_max);
    if (irqs != want)
        ERROR("io_in: %u interrupts, expected %u\n", irqs, want);
    if (negative)
        ERROR("io_in: %u handler entries before their event was sent\n", negative);
    bench("io_in", sum_avg(sum, ITER_IO), ITER_IO);
}

/* ------------------------------------------------------------ vm_switch */

/* The first call is made at boot, before any other benchmark (vm_switch_first):
 * a peer VM sharing this pCPU then waits in its call while the others run, so
 * its boot does not share the pCPU with them, and it answers at once later. */
static int64_t vm_switch_first;

static void bench_vm_switch(void)
{
    uint64_t t1;
    if (vm_switch_first == -1) {
        print("microbench: vm_switch: hypercall 0x%x returned -1\n", VM_SWITCH_CALL);
        print("BENCH vm_switch skipped (no peer VM)\n");
        return;
    }
    for (unsigned i = 1; i < WARMUP_VM_SWITCH; i++)
        (int64_t)vm_switch_call(&t1);
    uint64_t sum = 0;
    int64_t lmin = INT64_MAX, lmax = INT64_MIN;
    unsigned gone = 0, negative = 0;
    for (unsigned i = 0; i < ITER_VM_SWITCH; i++) {
        int64_t v = (int64_t)vm_switch_call(&t1);
        if (v == -1) {
            gone++;
            continue;
        }
        int64_t l = (int64_t)(t1 - (uint64_t)v);
        if (l < 0)
            negative++;
        sum += (uint64_t)(l < 0 ? 0 : l);
        lmin = l < lmin ? l : lmin;
        lmax = l > lmax ? l : lmax;
    }
    unsigned counted = ITER_VM_SWITCH - gone;
    print("microbench: vm_switch: calls=%u (the first at boot) min_ticks=%ld max_ticks=%ld "
          "sum_ticks=%lu\n", (unsigned)(WARMUP_VM_SWITCH + ITER_VM_SWITCH), lmin, lmax, sum);
    if (gone)
        ERROR("vm_switch: %u of %u timed calls returned -1 (the peer VM left early)\n", gone,
              (unsigned)ITER_VM_SWITCH);
    if (negative)
        ERROR("vm_switch: %u returns before the peer's call (CNTVCT differs between the VMs)\n",
              negative);
    bench("vm_switch", sum_avg(sum, counted), counted);
}

/* The partner VM of vm_switch: pass the baton until the other VM is gone. */
static int vm_peer(void)
{
    print("microbench: vm-peer\n");
    uint64_t t1, calls = 0;
    int64_t v;
    do {
        v = (int64_t)vm_switch_call(&t1);
        calls++;
    } while (v != -1);
    print("microbench: vm-peer done after %lu calls\n", calls);
    return 0;
}

/* ------------------------------------------------------------------ main */

static const struct {
    const char *name;
    void (*run)(void);
} benches[] = {
    {"hypercall", bench_hypercall}, {"mmio_kernel", bench_mmio_kernel}, {"mmio_user", bench_mmio_user},
    {"gic_trap", bench_gic_trap},   {"eoi", bench_eoi},                 {"ack_eoi", bench_ack_eoi},
    {"ipi", bench_ipi},             {"io_out", bench_io_out},           {"io_in", bench_io_in},
    {"vm_switch", bench_vm_switch},
};
#define NR_BENCHES (sizeof(benches) / sizeof(benches[0]))

int main(void)
{
    sync_handler = sync;
    if (fdt_bootargs_has("vm-peer"))
        return vm_peer();
    uint64_t t1;
    vm_switch_first = (int64_t)vm_switch_call(&t1);       /* vm_switch's first warm-up call, see there */

    local_irq_disable();
    cpt = cycles_per_tick();
    gic_init();                 /* boot CPU: distributor + its own interface */
    print("microbench: gic=v%d (%s) cpus=%u (%s) cycles_per_tick=%lu iterations: hypercall=%u "
          "mmio=%u eoi=%u ipi=%u io=%u vm_switch=%u\n",
          gic_version(), gic_source(), smp_cpu_count(), smp_cpu_source(), cpt,
          (unsigned)ITER_HYPERCALL, (unsigned)ITER_MMIO, (unsigned)ITER_EOI, (unsigned)ITER_IPI,
          (unsigned)ITER_IO, (unsigned)ITER_VM_SWITCH);
    io_detect();

    unsigned named = 0;
    for (unsigned i = 0; i < NR_BENCHES; i++)
        named += fdt_bootargs_has(benches[i].name);
    if (named) {
        print("microbench: running");
        for (unsigned i = 0; i < NR_BENCHES; i++)
            if (fdt_bootargs_has(benches[i].name))
                print(" %s", benches[i].name);
        print(" (bootargs)\n");
    }
    for (unsigned i = 0; i < NR_BENCHES; i++)
        if (!named || fdt_bootargs_has(benches[i].name))
            benches[i].run();

    print("microbench: interrupts spurious=%u unexpected=%u (last INTID %u)\n",
          irq_tally.spurious, irq_tally.unexpected, irq_tally.last_unexpected);
    if (irq_tally.unexpected || irq_tally.spurious)
        ERROR("%u spurious and %u unexpected interrupts\n", irq_tally.spurious,
              irq_tally.unexpected);
    if (undef_hvcs)
        print("microbench: note: hvc was UNDEFINED %lu times (not armvirt?); emulated "
              "NOT_SUPPORTED in the guest\n", undef_hvcs);
    if (errors)
        print("microbench: FAIL errors=%d\n", errors);
    return errors ? 1 : 0;
}
