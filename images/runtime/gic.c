/* armvirt guest runtime: GICv2 / GICv3 helpers (per-CPU interfaces, SGIs, no LPIs). */
#include "runtime.h"

/* QEMU virt / armvirt defaults, used when there is no DTB */
#define GICD_BASE_DEFAULT   0x08000000UL
#define GICC_BASE_DEFAULT   0x08010000UL
#define GICR_BASE_DEFAULT   0x080A0000UL

/* Distributor (both versions) */
#define GICD_CTLR           0x000u
#define GICD_IGROUPR        0x080u
#define GICD_ISENABLER      0x100u
#define GICD_IPRIORITYR     0x400u
#define GICD_SGIR           0xF00u      /* v2 */
#define GICD_IROUTER        0x6000u     /* v3 */
#define GICD_PIDR2_V2       0xFE8u      /* v2 (GIC-400 ICPIDR2) */
#define GICD_PIDR2_V3       0xFFE8u
#define GICD_CTLR_RWP       (1u << 31)
#define GICD_CTLR_ARE       (1u << 4)   /* ARE (DS = 1) / ARE_NS */

/* GICv2 CPU interface */
#define GICC_CTLR           0x00u
#define GICC_PMR            0x04u
#define GICC_IAR            0x0Cu
#define GICC_EOIR           0x10u
#define GICC_HPPIR          0x18u

/* GICv3 redistributor: RD_base frame, then SGI_base = RD_base + 64 KiB */
#define GICR_TYPER          0x0008u
#define GICR_WAKER          0x0014u
#define GICR_WAKER_PS       (1u << 1)   /* ProcessorSleep */
#define GICR_WAKER_CA       (1u << 2)   /* ChildrenAsleep */
#define GICR_SGI_BASE       0x10000u
#define GICR_IGROUPR0       (GICR_SGI_BASE + 0x080u)
#define GICR_ISENABLER0     (GICR_SGI_BASE + 0x100u)
#define GICR_IPRIORITYR     (GICR_SGI_BASE + 0x400u)

#define PRIO_MASK_DEFAULT   0xF0u

#define ICC_PMR_EL1         "S3_0_C4_C6_0"
#define ICC_IAR1_EL1        "S3_0_C12_C12_0"
#define ICC_EOIR1_EL1       "S3_0_C12_C12_1"
#define ICC_HPPIR1_EL1      "S3_0_C12_C12_2"
#define ICC_CTLR_EL1        "S3_0_C12_C12_4"
#define ICC_SRE_EL1         "S3_0_C12_C12_5"
#define ICC_IGRPEN1_EL1     "S3_0_C12_C12_7"
#define ICC_SGI1R_EL1       "S3_0_C12_C11_5"

static inline void isb(void)
{
    __asm__ volatile("isb" ::: "memory");
}


static struct {
    int ver;                /* published last: 0 until dist/cpu are set */
    const char *source;
    uint64_t dist, cpu;     /* v2: GICC (banked per CPU); v3: first redistributor frame */
} gic;
static uint64_t rd_base[MAX_CPUS];     /* v3: each CPU's RD_base, found on first use */
static volatile int dist_enabled;

/* Aff3.Aff2.Aff1.Aff0 packed as in GICR_TYPER[63:32] */
static uint32_t own_affinity(void)
{
    uint64_t m = read_mpidr();
    return (uint32_t)(m & 0xffffff) | (uint32_t)((m >> 32) & 0xff) << 24;
}

/* Walk the redistributor frames for the one whose affinity is this CPU's. */
static uint64_t find_redist(uint64_t base)
{
    uint32_t aff = own_affinity();
    uint64_t rd = base;
    for (int i = 0; i < 512; i++) {
        uint32_t lo = mmio_read32(rd + GICR_TYPER);
        uint32_t hi = mmio_read32(rd + GICR_TYPER + 4);
        if (hi == aff)
            return rd;
        if (lo & (1u << 4))             /* Last */
            break;
        rd += (lo & (1u << 1)) ? 0x40000 : 0x20000;   /* VLPIS: 4 frames */
    }
    return base;
}

static void gic_detect(void)
{
    if (*(volatile int *)&gic.ver)
        return;
    uint64_t dist, cpu;
    int ver = fdt_gic(&dist, &cpu);
    if (ver) {
        gic.source = "dtb";
    } else {
        /* No DTB (QEMU gives none to a bare ELF): ArchRev of the distributor's
         * PIDR2.  The GICv2 copy at 0xFE8 first: a v2 distributor is only
         * 4 KiB, so 0xFFE8 may not exist there, while 0xFE8 on a v3 is RAZ. */
        gic.source = "probe";
        dist = GICD_BASE_DEFAULT;
        uint32_t rev = (mmio_read32(dist + GICD_PIDR2_V2) >> 4) & 0xf;
        if (rev == 1 || rev == 2) {
            ver = 2;
        } else {
            rev = (mmio_read32(dist + GICD_PIDR2_V3) >> 4) & 0xf;
            ver = (rev == 3 || rev == 4) ? 3 : 2;
        }
        cpu = ver == 3 ? GICR_BASE_DEFAULT : GICC_BASE_DEFAULT;
    }
    gic.dist = dist;
    gic.cpu = cpu;
    __asm__ volatile("dmb ish" ::: "memory");
    *(volatile int *)&gic.ver = ver;
}

/* v2: the GICC frame (banked); v3: the calling CPU's redistributor RD_base
 * (the frame whose GICR_TYPER affinity is this CPU's MPIDR). */
static uint64_t cpu_if(void)
{
    gic_detect();
    if (gic.ver != 3)
        return gic.cpu;
    unsigned me = cpu_id() % MAX_CPUS;
    if (!rd_base[me])
        rd_base[me] = find_redist(gic.cpu);
    return rd_base[me];
}

int gic_version(void)
{
    gic_detect();
    return gic.ver;
}

const char *gic_source(void)
{
    gic_detect();
    return gic.source;
}

uint64_t gic_dist_base(void)
{
    gic_detect();
    return gic.dist;
}

uint64_t gic_cpu_base(void)
{
    return cpu_if();
}

uint32_t gic_read_dist(uint32_t offset)
{
    gic_detect();
    return mmio_read32(gic.dist + offset);
}

static void dist_wait_rwp(void)
{
    for (int i = 0; i < 1000000 && (mmio_read32(gic.dist + GICD_CTLR) & GICD_CTLR_RWP); i++)
        ;
}

/*
 * The distributor is enabled by the first call (the boot CPU's, before it
 * starts the others); every call sets up the CALLING CPU's banked CPU
 * interface (v2 GICC) or its redistributor and ICC registers (v3).
 */
void gic_init(void)
{
    uint64_t cpu = cpu_if();
    int first = !dist_enabled;
    if (gic.ver == 2) {
        /* No Security Extensions: everything stays group 0, signalled as IRQ
         * (GICC_CTLR.FIQEn = 0); EOImode 0: EOIR drops priority and deactivates. */
        if (first)
            mmio_write32(gic.dist + GICD_CTLR, 1);          /* EnableGrp0 */
        mmio_write32(cpu + GICC_PMR, PRIO_MASK_DEFAULT);
        mmio_write32(cpu + GICC_CTLR, 1);                   /* EnableGrp0 */
        dist_enabled = 1;
        return;
    }
    /* GICv3, affinity routing, group 1 */
    if (first) {
        mmio_write32(gic.dist + GICD_CTLR,
                     mmio_read32(gic.dist + GICD_CTLR) | GICD_CTLR_ARE | 3);  /* + Grp0/Grp1 */
        dist_wait_rwp();
    }
    mmio_write32(cpu + GICR_WAKER, mmio_read32(cpu + GICR_WAKER) & ~GICR_WAKER_PS);
    for (int i = 0; i < 1000000 && (mmio_read32(cpu + GICR_WAKER) & GICR_WAKER_CA); i++)
        ;
    mmio_write32(cpu + GICR_IGROUPR0, 0xffffffffu);        /* SGIs + PPIs: group 1 */
    SYSREG_WRITE(ICC_SRE_EL1, SYSREG_READ(ICC_SRE_EL1) | 1); /* SRE */
    isb();
    SYSREG_WRITE(ICC_PMR_EL1, PRIO_MASK_DEFAULT);
    SYSREG_WRITE(ICC_CTLR_EL1, SYSREG_READ(ICC_CTLR_EL1) & ~(uint64_t)2);  /* EOImode 0 */
    SYSREG_WRITE(ICC_IGRPEN1_EL1, 1);
    isb();
    dist_enabled = 1;
}

void gic_enable_irq(unsigned intid)
{
    gic_detect();
    uint32_t bit = 1u << (intid % 32);
    if (gic.ver == 3 && intid < 32) {
        mmio_write32(cpu_if() + GICR_ISENABLER0, bit);
        return;
    }
    if (gic.ver == 3) {                 /* SPI: group 1, routed to this CPU */
        uintptr_t g = gic.dist + GICD_IGROUPR + 4 * (intid / 32);
        mmio_write32(g, mmio_read32(g) | bit);
        uint32_t aff = own_affinity();
        mmio_write32(gic.dist + GICD_IROUTER + 8 * intid, aff & 0xffffff);
        mmio_write32(gic.dist + GICD_IROUTER + 8 * intid + 4, aff >> 24);
    }
    mmio_write32(gic.dist + GICD_ISENABLER + 4 * (intid / 32), bit);
    if (gic.ver == 3)
        dist_wait_rwp();
}

void gic_set_priority(unsigned intid, unsigned prio)
{
    gic_detect();
    uintptr_t reg = (gic.ver == 3 && intid < 32 ? cpu_if() + GICR_IPRIORITYR
                                                 : gic.dist + GICD_IPRIORITYR) + (intid & ~3u);
    unsigned shift = 8 * (intid % 4);
    uint32_t v = mmio_read32(reg) & ~(0xffu << shift);
    mmio_write32(reg, v | (prio & 0xffu) << shift);
}

uint32_t gic_ack(void)
{
    gic_detect();
    if (gic.ver == 3)
        return (uint32_t)SYSREG_READ(ICC_IAR1_EL1);
    return mmio_read32(gic.cpu + GICC_IAR);
}

struct irq_tally irq_tally;

uint32_t gic_ack_wanted(unsigned want)
{
    uint32_t iar = gic_ack();
    uint32_t id = GIC_INTID(iar);
    if (id >= 1020) {                   /* IHI 0048B 3.2.5 / IHI 0069 2.2.1: not completed */
        irq_tally.spurious++;
        return GIC_NOT_WANTED;
    }
    if (id != want) {
        irq_tally.unexpected++;
        irq_tally.last_unexpected = id;
        gic_eoi(iar);
        return GIC_NOT_WANTED;
    }
    return iar;
}

void gic_eoi(uint32_t iar)
{
    gic_detect();
    if (gic.ver == 3) {
        SYSREG_WRITE(ICC_EOIR1_EL1, iar);
        isb();
        return;
    }
    mmio_write32(gic.cpu + GICC_EOIR, iar);
}

uint32_t gic_hppir(void)
{
    gic_detect();
    if (gic.ver == 3)
        return (uint32_t)SYSREG_READ(ICC_HPPIR1_EL1);
    return mmio_read32(gic.cpu + GICC_HPPIR);
}

void gic_send_sgi_self(unsigned sgi)
{
    gic_detect();
    sgi &= 15;
    if (gic.ver == 2) {
        mmio_write32(gic.dist + GICD_SGIR, (2u << 24) | sgi);   /* TargetListFilter: this CPU */
        return;
    }
    uint64_t m = read_mpidr();
    uint64_t aff0 = m & 0xff;
    uint64_t v = (1ull << (aff0 % 16))                  /* TargetList */
               | ((m >> 8) & 0xff) << 16                /* Aff1 */
               | (uint64_t)sgi << 24                    /* INTID */
               | ((m >> 16) & 0xff) << 32               /* Aff2 */
               | (aff0 / 16) << 44                      /* RS */
               | ((m >> 32) & 0xff) << 48;              /* Aff3 */
    SYSREG_WRITE(ICC_SGI1R_EL1, v);
    isb();
}

/* v2: GICD_SGIR, TargetListFilter 0b00 (the list), CPUTargetList bit `cpu`.
 * v3: ICC_SGI1R_EL1 with Aff0 = cpu (TargetList bit cpu % 16, RS = cpu / 16)
 *     and the caller's Aff1/Aff2/Aff3 (one cluster). */
uint64_t gic_sgi_value(unsigned cpu, unsigned sgi)
{
    gic_detect();
    sgi &= 15;
    if (gic.ver == 2)
        return (1u << (16 + (cpu & 7))) | sgi;
    uint64_t m = read_mpidr();
    return (1ull << (cpu % 16))                         /* TargetList */
         | ((m >> 8) & 0xff) << 16                      /* Aff1 */
         | (uint64_t)sgi << 24                          /* INTID */
         | ((m >> 16) & 0xff) << 32                     /* Aff2 */
         | (uint64_t)(cpu / 16) << 44                   /* RS */
         | ((m >> 32) & 0xff) << 48;                    /* Aff3 */
}

void gic_send_sgi(unsigned cpu, unsigned sgi)
{
    uint64_t v = gic_sgi_value(cpu, sgi);
    /* make this CPU's earlier stores visible to the target's handler first */
    __asm__ volatile("dsb ish" ::: "memory");
    if (gic.ver == 2) {
        mmio_write32(gic.dist + GICD_SGIR, (uint32_t)v);
        return;
    }
    SYSREG_WRITE(ICC_SGI1R_EL1, v);
    isb();
}
