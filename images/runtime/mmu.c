/*
 * armvirt guest runtime: turning on the EL1&0 stage-1 MMU (4 KiB granule,
 * 39-bit VAs through TTBR0_EL1, tables start at level 1; TTBR1 walks off).
 * The caller builds the tables (runtime.h D_* descriptor bits); MAIR attr0 is
 * normal write-back memory, attr1 Device-nGnRnE.
 *
 * Nothing else in the runtime refers to this file, so --gc-sections drops it
 * from images that keep the MMU off.
 */
#include "runtime.h"

#define TCR_T0SZ(n)      ((uint64_t)(n) << 0)
#define TCR_IRGN0_WBWA   (1UL << 8)
#define TCR_ORGN0_WBWA   (1UL << 10)
#define TCR_SH0_INNER    (3UL << 12)
#define TCR_TG0_4K       (0UL << 14)
#define TCR_T1SZ(n)      ((uint64_t)(n) << 16)
#define TCR_EPD1         (1UL << 23)
#define TCR_TG1_4K       (2UL << 30)
#define TCR_IPS_40BIT    (2UL << 32)

#define SCTLR_C    (1UL << 2)
#define SCTLR_I    (1UL << 12)
#define SCTLR_WXN  (1UL << 19)
#define SCTLR_SPAN (1UL << 23)

void mmu_on(const uint64_t *l1)
{
    __asm__ volatile("dsb sy" ::: "memory");   /* tables written with the MMU off */
    SYSREG_WRITE("mair_el1", 0x00ffUL);          /* attr0 = 0xff normal, attr1 = 0x00 device */
    SYSREG_WRITE("tcr_el1", TCR_T0SZ(25) | TCR_IRGN0_WBWA | TCR_ORGN0_WBWA | TCR_SH0_INNER |
                              TCR_TG0_4K | TCR_T1SZ(25) | TCR_EPD1 | TCR_TG1_4K |
                              TCR_IPS_40BIT);
    SYSREG_WRITE("ttbr0_el1", (uint64_t)(uintptr_t)l1);
    __asm__ volatile("isb\n\t"
                     "dsb ish\n\t"
                     "tlbi vmalle1\n\t"
                     "dsb ish\n\t"
                     "ic iallu\n\t"
                     "dsb ish\n\t"
                     "isb" ::: "memory");
    uint64_t sctlr = SYSREG_READ("sctlr_el1");
    sctlr |= SCTLR_M | SCTLR_C | SCTLR_I | SCTLR_SPAN;
    sctlr &= ~SCTLR_WXN;
    SYSREG_WRITE("sctlr_el1", sctlr);
    __asm__ volatile("isb" ::: "memory");
}
