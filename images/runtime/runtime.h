/* armvirt guest runtime: UART console, PSCI, FDT, counters, exceptions. */
#ifndef ARMVIRT_RUNTIME_H
#define ARMVIRT_RUNTIME_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include "frame.h"

#define UART_BASE       0x09000000UL
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

/* FDT (validated lazily: boot_dtb, else a probe of RAM base) */
const void *fdt_blob(void);                     /* NULL if none found */
uint64_t fdt_cpu_clock_hz(void);                /* 0 if absent */
int fdt_memory(uint64_t *base, uint64_t *size); /* 1 if found, else defaults + 0 */
uint64_t cycles_per_tick(void);                 /* clock-frequency / CNTFRQ, >= 1 */

/* Freestanding string helpers */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
