/*
 * el0: stage-1 MMU, an EL0 program, system calls and a demand-paged fault.
 *
 * EL1 builds an identity map (4 KiB granule, 39-bit VA, level-1 start):
 *   L1[0]  0x00000000-0x3fffffff  device block, EL1 only, XN
 *   L1[1]  -> L2: RAM as 2 MiB normal WB blocks, EL1 RW, EL1-executable,
 *          except the 2 MiB EL0 area -> L3: 4 KiB EL0 RW pages (the code page
 *          EL0-executable, all PXN), with the data page at +0x1000 INVALID.
 * It copies the EL0 blob there, erets to EL0, serves svc calls (1 write,
 * 2 getel, 93 exit), maps the data page when EL0 faults on it, steps over an
 * UNDEFINED instruction, and checks the whole exchange.  On every exception
 * from EL0 it checks the stacks (ARM ARM D1.10): its frame sits right below
 * the SP_EL1 it left at el0_enter, and SP_EL0 holds the SP EL0 had (x7).
 */
#include "runtime.h"

#define SYS_WRITE 1
#define SYS_GETEL 2
#define SYS_EXIT  93

#define SZ_4K  0x1000UL
#define SZ_2M  0x200000UL
#define SZ_1G  0x40000000UL

#define EL0_DATA_OFFSET  0x1000UL
#define EL0_STACK_TOP    0x4000UL
#define EL0_DATA_VALUE   0x0123456789abcdefULL

#define SPSR_EL1H_DAIF 0x3c5UL

extern char el0_blob_start[], el0_blob_end[];
extern uint64_t el1_saved_sp;               /* SP_EL1 when el0_enter erets to EL0 */
uint64_t el0_enter(uint64_t entry, uint64_t sp_el0);
void el0_return(void);

static uint64_t l1[512] __attribute__((aligned(4096)));
static uint64_t l2[512] __attribute__((aligned(4096)));
static uint64_t l3[512] __attribute__((aligned(4096)));

static uint64_t el0_base;                   /* 2 MiB EL0 area */
static unsigned svc_calls, page_faults, undefs, bad_events;
static unsigned stack_checks, stack_bad;
static uint64_t fault_esr, fault_far, fault_elr;
static uint64_t exit_code = ~0UL;

static void build_tables(uint64_t ram_base, uint64_t ram_size)
{
    l1[0] = 0x0 | D_VALID | D_ATTR(ATTR_DEVICE) | D_AF | D_PXN | D_UXN;
    l1[1] = (uint64_t)(uintptr_t)l2 | D_VALID | D_TABLE;

    /* RAM in 1 GiB..2 GiB as 2 MiB blocks (only what the DTB says exists) */
    uint64_t ram_end = ram_base + ram_size;
    if (ram_end > 2 * SZ_1G)
        ram_end = 2 * SZ_1G;
    for (uint64_t a = SZ_1G; a < ram_end; a += SZ_2M)
        l2[(a - SZ_1G) / SZ_2M] = a | D_VALID | D_ATTR(ATTR_NORMAL) | D_SH_INNER | D_AF | D_UXN;

    /* the EL0 area through a level-3 table */
    for (unsigned i = 0; i < 512; i++) {
        uint64_t pa = el0_base + i * SZ_4K;
        uint64_t d = pa | D_VALID | D_PAGE | D_ATTR(ATTR_NORMAL) | D_SH_INNER | D_AF |
                     D_AP_EL0_RW | D_PXN;
        if (i != 0)
            d |= D_UXN;             /* only the code page is EL0-executable */
        l3[i] = d;
    }
    l3[EL0_DATA_OFFSET / SZ_4K] = 0;    /* INVALID until EL0 faults on it */
    l2[(el0_base - SZ_1G) / SZ_2M] = (uint64_t)(uintptr_t)l3 | D_VALID | D_TABLE;
}

static void sync_icache(uint64_t start, uint64_t end)
{
    for (uint64_t a = start & ~63UL; a < end; a += 64)
        __asm__ volatile("dc cvau, %0" :: "r"(a) : "memory");
    __asm__ volatile("dsb ish" ::: "memory");
    for (uint64_t a = start & ~63UL; a < end; a += 64)
        __asm__ volatile("ic ivau, %0" :: "r"(a) : "memory");
    __asm__ volatile("dsb ish\n\tisb" ::: "memory");
}

static int in_el0_area(uint64_t p, uint64_t len)
{
    return p >= el0_base && len <= SZ_2M && p + len <= el0_base + SZ_2M && p + len >= p;
}

static void do_svc(struct exc_frame *f)
{
    svc_calls++;
    switch (f->x[8]) {
    case SYS_WRITE: {
        uint64_t p = f->x[0], n = f->x[1];
        if (!in_el0_area(p, n) || n > SZ_4K) {
            f->x[0] = (uint64_t)-14;    /* -EFAULT: EL0 may only pass its own memory */
            bad_events++;
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            putc(((const volatile char *)(uintptr_t)p)[i]);
        f->x[0] = n;
        break;
    }
    case SYS_GETEL:
        f->x[0] = current_el();
        break;
    case SYS_EXIT:
        exit_code = f->x[0];
        /* resume EL1 in el0_return (x0 = code), not EL0 */
        f->elr = (uint64_t)(uintptr_t)el0_return;
        f->spsr = SPSR_EL1H_DAIF;
        break;
    default:
        f->x[0] = (uint64_t)-38;        /* -ENOSYS */
        bad_events++;
        break;
    }
}

/* The exception ran on the kernel's stack, and banked EL0's SP in SP_EL0. */
static void check_stacks(struct exc_frame *f, const char *what)
{
    uint64_t frame = (uint64_t)(uintptr_t)f;
    uint64_t want = el1_saved_sp - sizeof(struct exc_frame);
    stack_checks++;
    if (frame != want || f->sp_el0 != f->x[7]) {
        stack_bad++;
        print("el0: %s: kernel frame at 0x%lx (expected 0x%lx), SP_EL0=0x%lx (EL0 had 0x%lx)\n",
              what, frame, want, f->sp_el0, f->x[7]);
    }
}

static int sync(struct exc_frame *f)
{
    uint64_t ec = ESR_EC(f->esr);
    if ((f->spsr & 0xf) != 0)           /* only exceptions taken from EL0t */
        return 0;
    check_stacks(f, ec == EC_SVC64 ? "svc" : ec == EC_DABT_LOWER ? "data abort" : "undef");
    if (ec == EC_UNKNOWN && undefs == 0 && (f->esr & (1u << 25))) {
        undefs++;
        f->elr += 4;                    /* step over the UDF */
        return 1;
    }
    if (ec == EC_SVC64) {
        do_svc(f);
        return 1;
    }
    uint64_t data_page = el0_base + EL0_DATA_OFFSET;
    if (ec == EC_DABT_LOWER && ESR_FSC(f->esr) == 0x07 &&
        (f->far & ~(SZ_4K - 1)) == data_page && page_faults == 0) {
        page_faults++;
        fault_esr = f->esr;
        fault_far = f->far;
        fault_elr = f->elr;
        print("el0: data abort from EL0 ESR=0x%lx FAR=0x%lx ELR=0x%lx "
              "(EC=0x%lx DFSC=0x%lx WnR=%u): mapping the page\n",
              f->esr, f->far, f->elr, ec, ESR_FSC(f->esr), (f->esr & ESR_WNR) ? 1u : 0u);
        l3[EL0_DATA_OFFSET / SZ_4K] = data_page | D_VALID | D_PAGE | D_ATTR(ATTR_NORMAL) |
                                      D_SH_INNER | D_AF | D_AP_EL0_RW | D_PXN | D_UXN;
        __asm__ volatile("dsb ishst\n\t"
                         "tlbi vae1, %0\n\t"
                         "dsb ish\n\t"
                         "isb" :: "r"(data_page >> 12) : "memory");
        return 1;                       /* ELR still points at the store: retry */
    }
    return 0;
}

int main(void)
{
    uint64_t ram_base, ram_size;
    fdt_memory(&ram_base, &ram_size);
    el0_base = ((uint64_t)(uintptr_t)_end + SZ_2M - 1) & ~(SZ_2M - 1);
    if (ram_base != SZ_1G || el0_base + SZ_2M > ram_base + ram_size || el0_base >= 2 * SZ_1G) {
        print("el0: ERROR: unexpected RAM 0x%lx+0x%lx for EL0 area 0x%lx\n", ram_base,
              ram_size, el0_base);
        return 1;
    }
    uint64_t blob_len = (uint64_t)(el0_blob_end - el0_blob_start);
    if (blob_len > EL0_DATA_OFFSET) {
        print("el0: ERROR: EL0 blob too big (%lu bytes)\n", blob_len);
        return 1;
    }

    build_tables(ram_base, ram_size);
    mmu_on(l1);
    print("el0: MMU on (SCTLR_EL1=0x%lx TCR_EL1=0x%lx TTBR0_EL1=0x%lx), EL0 area 0x%lx-0x%lx\n",
          SYSREG_READ("sctlr_el1"), SYSREG_READ("tcr_el1"), SYSREG_READ("ttbr0_el1"), el0_base,
          el0_base + SZ_2M);

    memcpy((void *)(uintptr_t)el0_base, el0_blob_start, blob_len);
    sync_icache(el0_base, el0_base + blob_len);

    sync_handler = sync;
    uint64_t code = el0_enter(el0_base, el0_base + EL0_STACK_TOP);
    sync_handler = 0;

    uint64_t value = *(volatile uint64_t *)(uintptr_t)(el0_base + EL0_DATA_OFFSET);
    uint64_t data_page = el0_base + EL0_DATA_OFFSET;
    int fault_ok = page_faults == 1 && ESR_EC(fault_esr) == EC_DABT_LOWER &&
                   ESR_FSC(fault_esr) == 0x07 && (fault_esr & ESR_WNR) && fault_far == data_page;
    int value_ok = code == 0 && value == EL0_DATA_VALUE;
    print("el0: back at EL%u: exit code=%lu, data page holds 0x%016lx, fault ESR=0x%lx FAR=0x%lx%s\n",
          current_el(), code, value, fault_esr, fault_far,
          fault_ok ? " (EC 0x24, DFSC 0x07 translation fault L3, WnR)" : " (UNEXPECTED)");
    int stacks_ok = stack_checks == 6 && stack_bad == 0;
    print("el0: kernel stack and SP_EL0 right on %u of %u exceptions from EL0\n",
          stack_checks - stack_bad, stack_checks);
    int ok = fault_ok && value_ok && code == exit_code && svc_calls == 4 && undefs == 1 &&
             stacks_ok && bad_events == 0;
    print("el0: svc_calls=%u page_faults=%u undefs=%u el0_value_ok=%u %s\n", svc_calls,
          page_faults, undefs, value_ok ? 1u : 0u, ok ? "OK" : "FAIL");
    return ok ? 0 : 1;
}
