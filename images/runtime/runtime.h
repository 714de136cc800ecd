/* armvirt guest runtime: UART console, PSCI, FDT, counters, exceptions. */
#ifndef ARMVIRT_RUNTIME_H
#define ARMVIRT_RUNTIME_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include "frame.h"

#define UART_BASE       0x09000000UL
/* virtio-mmio transport 0 (virtio 1.x, 4.2.2): the ID registers */
#define VIRTIO_MMIO_BASE        0x0a000000UL
#define VIRTIO_MMIO_MAGIC       0x000u      /* 0x74726976 "virt" */
#define VIRTIO_MMIO_VERSION     0x004u
#define VIRTIO_MMIO_DEVICE_ID   0x008u      /* 0: no device */
#define VIRTIO_MMIO_VENDOR_ID   0x00cu
#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976u
#define UART_DR         0x00
#define UART_FR         0x18
#define UART_FR_TXFF    (1u << 5)

#define RAM_BASE_DEFAULT 0x40000000UL
#define RAM_SIZE_DEFAULT (128UL << 20)

#define PSCI_VERSION            0x84000000u
#define PSCI_MIGRATE_INFO_TYPE  0x84000006u
#define PSCI_SYSTEM_OFF         0x84000008u
#define PSCI_SYSTEM_RESET       0x84000009u
#define PSCI_FEATURES           0x8400000Au
#define PSCI_NOT_SUPPORTED      ((uint64_t)-1)
#define ARMVIRT_BENCH_CALL      0x4b000000u   /* no-op, returns -1 */

/* ESR_EL1 fields */
#define ESR_EC(esr)     (((esr) >> 26) & 0x3f)
#define ESR_ISS(esr)    ((esr) & 0x1ffffff)
#define ESR_FSC(esr)    ((esr) & 0x3f)          /* DFSC / IFSC */
#define ESR_WNR         (1u << 6)
#define EC_UNKNOWN      0x00
#define EC_SVC64        0x15
#define EC_HVC64        0x16
#define EC_SMC64        0x17
#define EC_SYSREG       0x18
#define EC_IABT_LOWER   0x20
#define EC_IABT_CUR     0x21
#define EC_DABT_LOWER   0x24
#define EC_DABT_CUR     0x25

/* Vector kinds (index into the 16-entry table) */
#define KIND_IS_SYNC(k) (((k) & 3) == 0)
#define KIND_IS_IRQ(k)  (((k) & 3) == 1)

struct exc_frame {
    uint64_t x[31];     /* x0..x30 */
    uint64_t sp_el0;
    uint64_t elr;
    uint64_t spsr;
    uint64_t esr;
    uint64_t far;
};
_Static_assert(sizeof(struct exc_frame) == FRAME_SIZE, "frame layout");
_Static_assert(__builtin_offsetof(struct exc_frame, elr) == FRAME_ELR, "frame layout");

/* Return nonzero if handled (the handler may edit f->elr, f->spsr, f->x[]). */
typedef int (*exc_handler_t)(struct exc_frame *f);
extern exc_handler_t sync_handler;
extern exc_handler_t irq_handler;
void exc_dispatch(struct exc_frame *f, int kind);

/* Linker / start.S symbols */
extern char _image_start[], _end[], __bss_start[], __bss_end[];
extern char __stack_bottom[], __stack_top[];
extern uint64_t boot_dtb;               /* x0 at entry */

/* Console */
void putc(int c);
void puts(const char *s);               /* no newline added */
void put_hex(uint64_t v);               /* "0x..." */
void put_dec(int64_t v);
void put_udec(uint64_t v);
void print(const char *fmt, ...);       /* %s %c %d %u %x %p %%, l/ll, 0-pad width */
void vprint(const char *fmt, va_list ap);

/* PSCI / SMCCC over hvc #0 */
uint64_t psci_call(uint64_t fn, uint64_t a1, uint64_t a2, uint64_t a3);
void system_off(void) __attribute__((noreturn));
void exit_status(int n) __attribute__((noreturn));

/* System registers by name or S<op0>_<op1>_C<n>_C<m>_<op2> string */
#define SYSREG_READ(enc) ({ uint64_t v_; \
    __asm__ volatile("mrs %0, " enc : "=r"(v_) :: "memory"); v_; })
#define SYSREG_WRITE(enc, v) \
    __asm__ volatile("msr " enc ", %0" :: "r"((uint64_t)(v)) : "memory")

/* MMIO (32-bit, single ldr/str: with the MMU off every access is Device memory) */
static inline uint32_t mmio_read32(uintptr_t a)
{
    uint32_t v;
    __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a) : "memory");
    return v;
}
static inline void mmio_write32(uintptr_t a, uint32_t v)
{
    __asm__ volatile("str %w0, [%1]" :: "r"(v), "r"(a) : "memory");
}

/* Generic timer */
static inline uint64_t read_cntvct(void)
{
    uint64_t v;
    __asm__ volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(v) :: "memory");
    return v;
}
static inline uint64_t read_cntfrq(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v));
    return v;
}
static inline unsigned current_el(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, CurrentEL" : "=r"(v));
    return (unsigned)(v >> 2) & 3;
}

/* EL1 virtual timer (CNTV_*); the write helpers end with an isb */
#define CNTV_CTL_ENABLE     (1u << 0)
#define CNTV_CTL_IMASK      (1u << 1)
#define CNTV_CTL_ISTATUS    (1u << 2)
#define INTID_VTIMER        27u         /* PPI, level-sensitive */
#define INTID_PTIMER        30u
static inline uint64_t cntv_ctl_read(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntv_ctl_el0" : "=r"(v) :: "memory");
    return v;
}
static inline void cntv_ctl_write(uint64_t v)
{
    __asm__ volatile("msr cntv_ctl_el0, %0\n\tisb" :: "r"(v) : "memory");
}
static inline uint64_t cntv_cval_read(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntv_cval_el0" : "=r"(v) :: "memory");
    return v;
}
static inline void cntv_cval_write(uint64_t v)
{
    __asm__ volatile("msr cntv_cval_el0, %0\n\tisb" :: "r"(v) : "memory");
}

/* PSTATE.I: IRQ masking at the PE */
static inline void local_irq_enable(void)
{
    __asm__ volatile("msr daifclr, #2" ::: "memory");
}
static inline void local_irq_disable(void)
{
    __asm__ volatile("msr daifset, #2" ::: "memory");
}

/*
 * Stage-1 MMU (mmu.c): 4 KiB granule, 39-bit VAs from TTBR0_EL1, level-1
 * tables (512 entries of 1 GiB); MAIR attr0 = normal write-back, attr1 =
 * Device-nGnRnE.  mmu_on(l1) loads TCR/MAIR/TTBR0, invalidates the TLB and
 * turns on SCTLR_EL1.M, C and I on the calling CPU.
 */
#define D_VALID     (1UL << 0)
#define D_TABLE     (1UL << 1)      /* L1/L2: next-level table; L3: page */
#define D_PAGE      (1UL << 1)
#define D_ATTR(i)   ((uint64_t)(i) << 2)
#define D_AP_EL0_RW (1UL << 6)      /* AP = 01 */
#define D_SH_INNER  (3UL << 8)
#define D_AF        (1UL << 10)
#define D_PXN       (1UL << 53)
#define D_UXN       (1UL << 54)
#define ATTR_NORMAL 0
#define ATTR_DEVICE 1
#define SCTLR_M     (1UL << 0)
void mmu_on(const uint64_t *l1);

/*
 * SMP.  MPIDR_EL1 of CPU i has Aff0 = i; cpu_id() is that Aff0 (the GICv2 CPU
 * interface number and the GICv3 TargetList bit of the CPU).
 */
#define MPIDR_AFF_MASK      0xff00ffffffull
static inline uint64_t read_mpidr(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, mpidr_el1" : "=r"(v));
    return v;
}
static inline unsigned cpu_id(void)
{
    return (unsigned)(read_mpidr() & 0xff);
}

/*
 * Spinlock: test-and-set with LDAXR/STLXR, released by STLR (no LSE
 * atomics: -march=armv8-a).  *l is 0 when free, else the owner's value.
 * Waiters spin on plain loads, without WFE (not trappable under armvirt) or
 * YIELD (under QEMU's -icount round-robin a vCPU that executes YIELD may not
 * be scheduled again while another one spins).
 */
typedef struct { volatile uint32_t v; } spinlock_t;
static inline void spin_lock_as(spinlock_t *l, uint32_t owner)
{
    uint32_t tmp, fail;
    __asm__ volatile(
        "1:     ldaxr   %w[tmp], [%[p]]\n\t"
        "       cbnz    %w[tmp], 2f\n\t"
        "       stlxr   %w[fail], %w[own], [%[p]]\n\t"
        "       cbnz    %w[fail], 1b\n\t"
        "       b       3f\n"
        "2:     ldr     %w[tmp], [%[p]]\n\t"  /* held: wait with plain loads */
        "       cbnz    %w[tmp], 2b\n\t"
        "       b       1b\n"
        "3:"
        : [tmp] "=&r"(tmp), [fail] "=&r"(fail)
        : [p] "r"(&l->v), [own] "r"(owner)
        : "memory");
}
static inline void spin_lock(spinlock_t *l)
{
    spin_lock_as(l, 1);
}
static inline void spin_unlock(spinlock_t *l)
{
    __asm__ volatile("stlr wzr, [%0]" :: "r"(&l->v) : "memory");
}

/* *p += v with LDXR/STLXR + DMB (fully ordered, as Linux's atomic_add_return);
 * returns the new value. */
static inline uint32_t atomic_add_return(volatile uint32_t *p, uint32_t v)
{
    uint32_t res, fail;
    __asm__ volatile(
        "1:     ldxr    %w[res], [%[p]]\n\t"
        "       add     %w[res], %w[res], %w[v]\n\t"
        "       stlxr   %w[fail], %w[res], [%[p]]\n\t"
        "       cbnz    %w[fail], 1b\n\t"
        "       dmb     ish"
        : [res] "=&r"(res), [fail] "=&r"(fail)
        : [p] "r"(p), [v] "r"(v)
        : "memory");
    return res;
}
static inline void smp_mb(void)
{
    __asm__ volatile("dmb ish" ::: "memory");
}

#define PSCI_CPU_OFF            0x84000002u
#define PSCI_CPU_ON             0xC4000003u     /* SMC64: x1 MPIDR, x2 entry, x3 context id */
#define PSCI_AFFINITY_INFO      0xC4000004u     /* SMC64: x1 MPIDR, x2 level 0 */
#define PSCI_SUCCESS            0
#define PSCI_INVALID_PARAMETERS (-2)
#define PSCI_ALREADY_ON         (-4)
#define PSCI_ON_PENDING         (-5)
#define PSCI_AFF_ON             0
#define PSCI_AFF_OFF            1
#define PSCI_AFF_ON_PENDING     2

/*
 * smp.c.  CPU numbers are indexes into the DTB's /cpus list (cpu 0 = the boot
 * CPU).  smp_cpu_on(cpu) starts `cpu` at secondary_entry (start.S) with
 * context id = cpu: it runs secondary_main(cpu) on its own 16 KiB stack with
 * the runtime's vectors, and calls PSCI CPU_OFF when that returns.  Set
 * secondary_main before the first smp_cpu_on.
 */
extern void (*volatile secondary_main)(unsigned cpu);
extern char secondary_entry[];
unsigned smp_cpu_count(void);           /* DTB count (<= MAX_CPUS), else PSCI probe, else 1 */
const char *smp_cpu_source(void);       /* "dtb", "psci" (AFFINITY_INFO probe) or "default" */
uint64_t smp_cpu_mpidr(unsigned cpu);   /* DTB reg, else Aff0 = cpu */
int64_t smp_cpu_on(unsigned cpu);       /* PSCI CPU_ON return value */
int64_t smp_affinity_info(unsigned cpu);/* PSCI AFFINITY_INFO: 0 ON, 1 OFF, 2 ON_PENDING */
const char *psci_ret_name(int64_t r);   /* "SUCCESS", "ALREADY_ON", ... */

/*
 * x18 belongs to the runtime (everything is built with -ffixed-x18).  The
 * first instruction of every IRQ vector is `mrs x18, cntvct_el0` (no isb), so
 * x18 holds the handler's entry time; exc_common saves it in the frame
 * (x[18]) and exc_dispatch copies it before calling irq_handler.  The
 * interrupted context's x18 is lost.  irq_entry_ticks() is the entry time of
 * the most recent IRQ exception (valid in and after the handler).
 */
uint64_t irq_entry_ticks(void);

/*
 * GIC (v2 or v3, detected from the DTB, else by probing the distributor's
 * PIDR2 ArchRev).  gic_ack() returns the raw IAR value: the INTID is its low
 * 10 bits (GIC_INTID; 1023 = spurious); on GICv2 an SGI also carries the
 * source CPU in bits [12:10], so pass the value unchanged to gic_eoi().
 * Everything is group 0 on GICv2 (signalled as IRQ) and group 1 on GICv3.
 */
#define GIC_SPURIOUS        1023u
#define GIC_INTID(iar)      ((iar) & 0x3ffu)
#define GICD_TYPER          0x004u
#define GICD_IIDR           0x008u      /* [11:0] implementer JEP106 (ARM: 0x43B) */
int gic_version(void);                  /* 2 or 3 */
const char *gic_source(void);           /* "dtb" or "probe" */
uint64_t gic_dist_base(void);
uint64_t gic_cpu_base(void);            /* v2: GICC; v3: the calling CPU's redistributor RD_base */
/* The calling CPU's CPU interface (v3: its redistributor too), PMR 0xF0; the
 * first call (the boot CPU's) also enables the distributor.  Call it on every
 * CPU that takes interrupts; the banked SGI/PPI helpers act on the caller. */
void gic_init(void);
void gic_enable_irq(unsigned intid);
void gic_set_priority(unsigned intid, unsigned prio);
uint32_t gic_ack(void);                 /* GICC_IAR / ICC_IAR1_EL1 */
/* The first step of an image's IRQ handler: acknowledge, and deal with whatever
 * is not `want` - a special INTID 1020-1023 (spurious: nothing to complete) or
 * another interrupt (counted and completed).  Returns the raw IAR of `want`, for
 * gic_eoi(), or GIC_NOT_WANTED. */
#define GIC_NOT_WANTED      0xffffffffu
struct irq_tally { volatile uint32_t spurious, unexpected, last_unexpected; };
extern struct irq_tally irq_tally;
uint32_t gic_ack_wanted(unsigned want);
void gic_eoi(uint32_t iar);             /* GICC_EOIR / ICC_EOIR1_EL1 (EOImode 0) */
uint32_t gic_hppir(void);               /* GICC_HPPIR / ICC_HPPIR1_EL1 */
void gic_send_sgi_self(unsigned sgi);
/* SGI to CPU `cpu` (v2: CPUTargetList bit cpu; v3: Aff0 = cpu, Aff3.Aff2.Aff1
 * of the caller).  gic_sgi_value() is the GICD_SGIR (v2) or ICC_SGI1R_EL1 (v3)
 * value that gic_send_sgi() writes, for images that time the write itself. */
uint64_t gic_sgi_value(unsigned cpu, unsigned sgi);
void gic_send_sgi(unsigned cpu, unsigned sgi);
uint32_t gic_read_dist(uint32_t offset);

/* FDT (validated lazily: boot_dtb, else a probe of RAM base) */
const void *fdt_blob(void);                     /* NULL if none found */
uint64_t fdt_cpu_clock_hz(void);                /* 0 if absent */
int fdt_memory(uint64_t *base, uint64_t *size); /* 1 if found, else defaults + 0 */
uint64_t cycles_per_tick(void);                 /* clock-frequency / CNTFRQ, >= 1 */
/* n reads of a 32-bit MMIO register between two CNTVCT reads (counter ticks),
 * and the same loop without the read: their difference is n reads' cost. */
uint64_t mmio_read32_loop(uint64_t n, uint64_t addr, uint32_t *last);
uint64_t mmio_baseline_loop(uint64_t n, uint64_t addr);
/* n 32-bit writes of `value` to addr, timed the same way (baseline: mmio_baseline_loop) */
uint64_t mmio_write32_loop(uint64_t n, uint64_t addr, uint32_t value);
/* warmup, then n reads of addr timed minus the baseline loop: returns bench_loop_avg()
 * (t, b: the two loops' ticks; last: the value read) */
uint64_t mmio_read_bench(uint64_t addr, unsigned warmup, unsigned n, uint64_t cpt, uint32_t *last,
                         uint64_t *t, uint64_t *b);

/* Timed kernels of the benchmark images (bench.c), shared so that microbench
 * measures exactly as the single-purpose images do. */
/* n HVCs of function 0x4b000000 between two CNTVCT reads, and the loop without
 * the hvc; bench_loop_avg() = round((t - b) * cycles_per_tick / n), 0 if < 0 */
uint64_t hvc_loop(uint64_t n);
uint64_t hvc_baseline_loop(uint64_t n);
uint64_t bench_loop_avg(uint64_t t, uint64_t b, unsigned n, uint64_t cpt);
/* A sync handler's helper: an UNDEF on `hvc #0` (QEMU, for non-PSCI function
 * IDs) is answered NOT_SUPPORTED in x0 and counted; 1 if it was one. */
extern volatile uint64_t undef_hvcs;
int hvc_undef_as_not_supported(struct exc_frame *f);
/* Acknowledge + EOI of SGI `sgi` made pending to this CPU with IRQs masked,
 * warmup + iter times, each pair timed and a baseline pair (v2: the same
 * ldr/str on RAM, v3: two nops) timed after it: sums over the iter counted
 * ones.  0 (stuck_at = the iteration) if the SGI never showed pending. */
#define EOI_WAIT_POLLS  100000
struct eoi_result {
    uint64_t ticks, baseline;   /* sums over the counted pairs */
    uint32_t ok, bad, last_bad; /* acknowledges that returned sgi / another INTID */
    int stuck_at;               /* -1, or the iteration whose SGI never showed pending */
};
int eoi_measure(unsigned sgi, unsigned prio, unsigned warmup, unsigned iter, struct eoi_result *r);
/* The EOI alone, as KVM/ARM's developers' in-guest benchmark times it: n writes
 * of 1023 (spurious: the write is ignored, GIC IHI 0048 4.4.5 / IHI 0069
 * 12.2.9) to GICC_EOIR (v2) or ICC_EOIR1_EL1 (v3) between two CNTVCT reads,
 * and the same loop with the write replaced (v2: a str to RAM, v3: a nop). */
uint64_t eoi_spurious_loop(uint64_t n);
uint64_t eoi_spurious_baseline_loop(uint64_t n);
/* SGI latency from this CPU to `target`, spinning with IRQs unmasked (IPI_SPIN)
 * or asleep in WFI (IPI_WFI): CPU_ON target (its handler stores
 * irq_entry_ticks()), then warmup + iter times: t0 = CNTVCT and at once the SGI
 * write; wait for the ack; then wait until the target spins again (its loop
 * count moves) or, for IPI_WFI, 20 us for it to sleep again; sample = entry -
 * t0.  Then stops the target (CPU_OFF).  Installs its own irq_handler and
 * secondary_main.  0 if the target did not come up. */
#define IPI_TIMEOUT_SEC 2
struct ipi_result {
    int64_t cpu_on;             /* PSCI CPU_ON's return */
    unsigned sent, received, lost, negative, bad_source, counted;
    uint64_t sum;               /* ticks over the counted samples */
    int64_t min, max;
    int64_t target_aff;         /* AFFINITY_INFO after the stop: 1 = OFF */
};
/* IPI_SPIN: the target spins with IRQs unmasked (ISCA'16 "virtual IPI": both vCPUs
 * running); IPI_WFI: it waits in WFI (the wake-up path) */
enum ipi_mode { IPI_SPIN, IPI_WFI };
int ipi_measure(unsigned target, unsigned sgi, unsigned prio, unsigned warmup, unsigned iter,
                enum ipi_mode mode, struct ipi_result *r);
/* HVC 0x4b000010 with x1 = CNTVCT (isb; mrs): returns x0, the peer VM's value
 * (or -1), and *t1 = CNTVCT right after the call (isb; mrs) */
uint64_t vm_switch_call(uint64_t *t1);
/* GIC node (compatible "arm,gic-v3" -> 3, "arm,cortex-a15-gic"/"arm,gic-400" -> 2)
 * under the root: returns 2, 3 or 0 (none), with its first two reg bases
 * (v2: GICD, GICC; v3: GICD, first redistributor). */
int fdt_gic(uint64_t *dist, uint64_t *cpu_or_redist);
/* Number of cpu@ nodes under /cpus (0 without a DTB), and the reg (MPIDR
 * affinity) of the i-th of the first MAX_CPUS (in DTB order). */
unsigned fdt_cpu_count(void);
int fdt_cpu_mpidr(unsigned i, uint64_t *mpidr);  /* 1 if the DTB lists it */

/* /chosen/bootargs (NUL-terminated, inside the blob) or NULL; fdt_bootargs_has():
 * 1 if it holds `word` as a whole space-separated word.  fdt_find_compatible():
 * the first node under / whose compatible list holds `compat`: 1 with its first
 * reg base (root #address-cells) and the INTID of its first interrupt (GIC
 * specifier <type number flags>: SPI n -> 32 + n, PPI n -> 16 + n; 0 if none),
 * else 0.  Each call walks the blob anew. */
const char *fdt_bootargs(void);
int fdt_bootargs_has(const char *word);
int fdt_find_compatible(const char *compat, uint64_t *base, uint32_t *intid);
/* /chosen linux,initrd-start and linux,initrd-end (1 or 2 cells each): 1 and the
 * range [start, end) if both are there, else 0. */
int fdt_initrd(uint64_t *start, uint64_t *end);

/* Freestanding string helpers */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
