/*
 * armvirt guest runtime: entry point and EL1 exception vectors.
 *
 * Boot contract: entered at EL1h, MMU and caches off, DAIF masked,
 * x0 = physical address of the DTB (may be 0 or garbage under other loaders;
 * runtime.c validates it lazily).
 */
    .file   "start.S"   /* fixed STT_FILE name: keeps builds reproducible */
#include "frame.h"

    .section .text.boot, "ax"
    .global _start
    .type _start, %function
_start:
    mov     x19, x0                 /* DTB pointer: keep it across the .bss clear */

    /* stack: top of the 64 KiB .bss stack (SP_EL1; we run at EL1h) */
    msr     spsel, #1
    ldr     x1, =__stack_top
    mov     sp, x1

    /* zero .bss (16-byte aligned bounds from link.ld) */
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16
    b       1b
2:
    ldr     x1, =boot_dtb
    str     x19, [x1]

    /* CPACR_EL1.FPEN = 0b11: no FP/SIMD traps */
    mrs     x1, cpacr_el1
    orr     x1, x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb

    /* exception vectors */
    ldr     x1, =exc_vectors
    msr     vbar_el1, x1
    isb

    bl      main
    bl      exit_status             /* w0 = main's return value; never returns */
3:  wfi
    b       3b
    .size _start, . - _start
    .ltorg

/*
 * Vector table: 16 entries x 0x80 bytes, 2 KiB aligned.  Each entry reserves
 * a frame, saves x0/x1, puts its index in x1 and branches to the common path.
 *
 * IRQ entries first read the virtual counter into x18, the register the
 * runtime reserves (-ffixed-x18): `mrs x18, cntvct_el0` is the FIRST
 * instruction, with no isb before it, so the value is the handler's entry
 * time.  exc_common stores x18 in the frame (x[18]) before anything else can
 * touch it, and exc_dispatch hands it to irq_entry_ticks().
 */
    .macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       exc_common
    .endm

    .macro VENTRY_IRQ kind
    .balign 0x80
    mrs     x18, cntvct_el0         /* entry time: must stay the first instruction */
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       exc_common
    .endm

    .text
    .balign 2048
    .global exc_vectors
exc_vectors:
    VENTRY      0   /* current EL, SP_EL0: sync   */
    VENTRY_IRQ  1   /*                     irq    */
    VENTRY      2   /*                     fiq    */
    VENTRY      3   /*                     serror */
    VENTRY      4   /* current EL, SP_ELx: sync   */
    VENTRY_IRQ  5   /*                     irq    (VBAR + 0x280) */
    VENTRY      6   /*                     fiq    */
    VENTRY      7   /*                     serror */
    VENTRY      8   /* lower EL, AArch64:  sync   */
    VENTRY_IRQ  9   /*                     irq    (VBAR + 0x480) */
    VENTRY      10  /*                     fiq    */
    VENTRY      11  /*                     serror */
    VENTRY      12  /* lower EL, AArch32:  sync   */
    VENTRY_IRQ  13  /*                     irq    */
    VENTRY      14  /*                     fiq    */
    VENTRY      15  /*                     serror */

    .balign 16
    .type exc_common, %function
exc_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #FRAME_X30]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #FRAME_ELR]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #FRAME_ESR]

    mov     x0, sp                  /* struct exc_frame * */
    bl      exc_dispatch            /* (frame, kind in w1) */

    /* restore; ELR/SPSR/SP_EL0 come from the frame so handlers may edit them */
    ldp     x2, x3, [sp, #FRAME_ELR]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #FRAME_X30]
    msr     sp_el0, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret
    .size exc_common, . - exc_common

/*
 * Secondary CPU entry (smp.c passes it to PSCI CPU_ON): EL1h, MMU off, DAIF
 * masked, x0 = context id = this CPU's number (1..MAX_CPUS-1).  Takes the
 * stack secondary_stacks[x0], enables FP/SIMD, installs the vectors and calls
 * the C function pointer secondary_main(cpu) set by the boot CPU; when that
 * returns (or is NULL, or x0 is out of range) the CPU calls PSCI CPU_OFF.
 * Own sections, so images that never start a CPU do not link the 128 KiB of
 * stacks (--gc-sections).
 */
    .section .text.secondary_entry, "ax"
    .balign 4
    .global secondary_entry
    .type secondary_entry, %function
secondary_entry:
    msr     spsel, #1
    mov     x19, x0
    cmp     x19, #MAX_CPUS
    b.hs    8f                      /* no stack for it: straight to CPU_OFF */
    ldr     x1, =secondary_stacks
    add     x2, x19, #1
    add     x1, x1, x2, lsl #SECONDARY_STACK_SHIFT
    mov     sp, x1                  /* top of secondary_stacks[cpu] */

    mrs     x1, cpacr_el1           /* FPEN = 0b11 */
    orr     x1, x1, #(3 << 20)
    msr     cpacr_el1, x1
    ldr     x1, =exc_vectors
    msr     vbar_el1, x1
    isb

    ldr     x1, =secondary_main
    ldr     x1, [x1]
    cbz     x1, 8f
    mov     x0, x19                 /* secondary_main(cpu) */
    blr     x1
8:  ldr     x0, =PSCI_CPU_OFF_FN
    hvc     #0                      /* CPU_OFF: does not return on success */
9:  wfi
    b       9b
    .size secondary_entry, . - secondary_entry
    .ltorg

    .section .bss.secondary_stacks, "aw", %nobits
    .balign 16
    .global secondary_stacks
secondary_stacks:
    .space  MAX_CPUS * SECONDARY_STACK_SIZE

/* 64 KiB boot stack (SP_EL1), 16-byte aligned */
    .section .bss.stack, "aw", %nobits
    .balign 16
    .global __stack_bottom, __stack_top
__stack_bottom:
    .space  STACK_SIZE
__stack_top:
