/*
 * hostile: attacks on the hypervisor boundary.  Each attempt runs with the
 * sync handler armed; the handler records ESR/FAR and skips the faulting
 * instruction (ELR += 4).  An attempt counts as blocked only if it ended the
 * way the armvirt contract says it must:
 *   data abort (EC 0x25) for memory that is neither RAM nor a device,
 *   UNDEFINED (EC 0x00) for EL2/impdef system registers and smc,
 *   NOT_SUPPORTED (-1) with x1..x3 untouched for unknown hvc function IDs.
 */
#include "runtime.h"

#define HOST_MEM_BASE 0x8000000000UL
#define FLASH_BASE    0x0UL

static volatile int armed;
static volatile unsigned faults;
static volatile uint64_t last_esr, last_far;
static unsigned attempts, blocked;

static int sync(struct exc_frame *f)
{
    if (!armed || (f->spsr & 0xf) == 0)     /* only our own EL1 attempts */
        return 0;
    faults++;
    last_esr = f->esr;
    last_far = f->far;
    f->elr += 4;
    return 1;
}

static void arm(void)
{
    faults = 0;
    last_esr = 0;
    last_far = 0;
    armed = 1;
    __asm__ volatile("" ::: "memory");
}

static void disarm(void)
{
    __asm__ volatile("" ::: "memory");
    armed = 0;
}

static const char *ec_name(uint64_t ec)
{
    switch (ec) {
    case EC_UNKNOWN: return "undefined";
    case EC_DABT_CUR: return "data abort";
    case EC_DABT_LOWER: return "data abort (lower EL)";
    case EC_SYSREG: return "system register trap";
    case EC_SMC64: return "smc trap";
    case EC_HVC64: return "hvc trap";
    default: return "exception";
    }
}

/* Judge an attempt that must raise exception class `want_ec`. */
static void judge_exc(const char *name, uint64_t want_ec, uint64_t value)
{
    attempts++;
    if (faults == 1 && ESR_EC(last_esr) == want_ec) {
        blocked++;
        if (want_ec == EC_DABT_CUR || want_ec == EC_DABT_LOWER)
            print("hostile: %s: blocked (%s DFSC=0x%lx FAR=0x%lx, ESR=0x%lx)\n", name,
                  ec_name(want_ec), ESR_FSC(last_esr), last_far, last_esr);
        else
            print("hostile: %s: blocked (%s, ESR=0x%lx)\n", name, ec_name(want_ec), last_esr);
    } else if (faults) {
        print("hostile: %s: NOT BLOCKED (wrong exception: %s, ESR=0x%lx FAR=0x%lx, "
              "expected EC 0x%lx)\n", name, ec_name(ESR_EC(last_esr)), last_esr, last_far,
              want_ec);
    } else {
        print("hostile: %s: NOT BLOCKED (no exception, value=0x%lx)\n", name, value);
    }
}

/* ---- memory: one load or store, skipped by the handler if it faults ---- */

static void try_read(const char *name, uint64_t addr)
{
    uint64_t v = 0x5555555555555555UL;
    arm();
    __asm__ volatile("ldr %0, [%1]" : "+r"(v) : "r"(addr) : "memory");
    disarm();
    judge_exc(name, EC_DABT_CUR, v);
}

static void try_write(const char *name, uint64_t addr)
{
    arm();
    __asm__ volatile("str %0, [%1]" :: "r"(0xbadc0ffee0ddf00dUL), "r"(addr) : "memory");
    disarm();
    judge_exc(name, EC_DABT_CUR, 0);
}

/* ---- system registers / smc: must be UNDEFINED at EL1 ---- */

#define TRY_INSN(name, insn)                                                   \
    do {                                                                       \
        uint64_t _v = 0x1234;                                                  \
        arm();                                                                 \
        __asm__ volatile(insn : "+r"(_v) :: "memory");                         \
        disarm();                                                              \
        judge_exc(name, EC_UNKNOWN, _v);                                       \
    } while (0)

/* ---- hvc with garbage: must return NOT_SUPPORTED, x1..x3 untouched ---- */

static void try_hvc(const char *name, uint64_t fn, uint64_t a1, uint64_t a2, uint64_t a3)
{
    register uint64_t x0 __asm__("x0") = fn;
    register uint64_t x1 __asm__("x1") = a1;
    register uint64_t x2 __asm__("x2") = a2;
    register uint64_t x3 __asm__("x3") = a3;
    arm();
    __asm__ volatile("hvc #0" : "+r"(x0), "+r"(x1), "+r"(x2), "+r"(x3) :: "memory");
    disarm();
    attempts++;
    if (faults) {
        print("hostile: %s: NOT BLOCKED (took %s, ESR=0x%lx, expected NOT_SUPPORTED)\n", name,
              ec_name(ESR_EC(last_esr)), last_esr);
    } else if (x0 != PSCI_NOT_SUPPORTED) {
        print("hostile: %s: NOT BLOCKED (returned 0x%lx)\n", name, x0);
    } else if (x1 != a1 || x2 != a2 || x3 != a3) {
        print("hostile: %s: NOT BLOCKED (returned -1 but clobbered x1..x3: 0x%lx 0x%lx 0x%lx)\n",
              name, x1, x2, x3);
    } else {
        blocked++;
        print("hostile: %s: blocked (error code -1 NOT_SUPPORTED, ESR=0x0)\n", name);
    }
}

int main(void)
{
    uint64_t ram_base, ram_size;
    int from_dtb = fdt_memory(&ram_base, &ram_size);
    uint64_t past_ram = ram_base + ram_size;
    print("hostile: ram=0x%lx+0x%lx (%s)\n", ram_base, ram_size, from_dtb ? "dtb" : "default");
    sync_handler = sync;

    /* 1-2: just past the end of RAM */
    try_read("read_past_ram", past_ram);
    try_write("write_past_ram", past_ram);
    /* 3: host memory (stage-2 tables), outside the guest IPA space */
    try_read("read_host_mem", HOST_MEM_BASE);
    try_write("write_host_mem", HOST_MEM_BASE);
    /* 4: flash, not fitted */
    try_read("read_flash", FLASH_BASE);
    try_write("write_flash", FLASH_BASE);
    /* 5: EL2 system registers */
    TRY_INSN("msr_hcr_el2", "msr hcr_el2, %0");
    TRY_INSN("mrs_vttbr_el2", "mrs %0, vttbr_el2");
    TRY_INSN("msr_vbar_el2", "msr vbar_el2, %0");
    /* 6: secure monitor call */
    TRY_INSN("smc", "smc #0");
    /* 7: hvc with garbage function IDs and arguments */
    try_hvc("hvc_0xdeadbeef", 0xdeadbeefUL, 0xfeedfacecafebeefUL, 0x8000000000UL, ~0UL);
    try_hvc("hvc_0xc4000099", 0xc4000099UL, 0x4000000000000000UL, 0x1UL, 0xdeadUL);
    try_hvc("hvc_0xffffffff", 0xffffffffUL, 0x0UL, 0xffffffffffffffffUL, 0x40000000UL);
    try_hvc("hvc_0x0", 0x0UL, 0x8400000aUL, 0x84000008UL, 0x84000009UL);
    /* 8: PSCI_FEATURES of an unknown function */
    try_hvc("psci_features_unknown", PSCI_FEATURES, 0x12345678UL, 0x0UL, 0x0UL);
    /* 9: implementation-defined system register */
    TRY_INSN("mrs_impdef_s3_0_c15_c0_0", "mrs %0, s3_0_c15_c0_0");

    sync_handler = 0;
    print("hostile: attempts=%u blocked=%u\n", attempts, blocked);
    return blocked == attempts ? 0 : 1;
}
