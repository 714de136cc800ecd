/*
 * el0: the EL0 program (copied by EL1 into the EL0 area, so it is written
 * position independent: only PC-relative references inside the blob) and the
 * EL1 side of entering / leaving EL0.
 *
 * EL0 area layout (VA = PA, 4 KiB pages):
 *   +0x0000 code page (this blob; EL0 R/W/X, PXN)
 *   +0x1000 data page, INVALID at first: the first store faults to EL1
 *   +0x2000.. stack pages; SP_EL0 starts at +0x4000
 *
 * EL0 runs on its own stack, below where SP_EL0 started, and puts its SP in
 * x7 before every exception it causes (SVC, the page fault, an UNDEFINED
 * instruction): EL1 checks that the exception banked exactly that SP in
 * SP_EL0 and that its own frame is on the EL1 stack (ARM ARM D1.10); EL0
 * checks that its SP and a canary on its stack came back unchanged.
 */
    .file   "el0.S"     /* fixed STT_FILE name: keeps builds reproducible */
#define SYS_WRITE 1
#define SYS_GETEL 2
#define SYS_EXIT  93
#define EL0_DATA_OFFSET 0x1000

    .text
    .balign 16
    .global el0_blob_start, el0_blob_end
el0_blob_start:
    /* a stack frame of our own, with a canary in it */
    sub     sp, sp, #64
    movz    x23, #0x5a5a
    movk    x23, #0xc0de, lsl #16
    stp     x23, x23, [sp, #16]
    mov     x22, #0                 /* exit code bits */

    /* write("el0: hello from EL0\n") */
    adr     x0, msg_hello
    mov     x1, #(msg_hello_end - msg_hello)
    mov     x8, #SYS_WRITE
    mov     x7, sp
    svc     #0
    bl      sp_check

    /* getel(): EL1 returns its CurrentEL; must be 1 */
    mov     x8, #SYS_GETEL
    mov     x7, sp
    svc     #0
    bl      sp_check
    mov     x20, x0
    cmp     x20, #1
    b.eq    1f
    orr     x22, x22, #2
1:
    /* store to the invalid data page: faults once, EL1 maps it, we retry */
    adr     x9, el0_blob_start
    add     x9, x9, #EL0_DATA_OFFSET
    movz    x3, #0xcdef
    movk    x3, #0x89ab, lsl #16
    movk    x3, #0x4567, lsl #32
    movk    x3, #0x0123, lsl #48
    mov     x7, sp
    str     x3, [x9]
    bl      sp_check
    ldr     x4, [x9]
    cmp     x3, x4
    b.eq    2f
    orr     x22, x22, #1
2:
    /* the stack works too */
    stp     x3, x4, [sp, #-16]!
    ldp     x5, x6, [sp], #16
    cmp     x5, x6
    b.eq    3f
    orr     x22, x22, #4
3:
    /* an UNDEFINED instruction: EL1 counts it and steps over it */
    mov     x7, sp
    udf     #0x5a
    bl      sp_check

    adr     x0, msg_done
    mov     x1, #(msg_done_end - msg_done)
    mov     x8, #SYS_WRITE
    mov     x7, sp
    svc     #0
    bl      sp_check

    /* the canary survived every exception */
    ldp     x5, x6, [sp, #16]
    cmp     x5, x23
    ccmp    x6, x23, #0, eq
    b.eq    5f
    orr     x22, x22, #16
5:
    /* exit(code) */
    mov     x0, x22
    mov     x8, #SYS_EXIT
    mov     x7, sp
    svc     #0
4:  b       4b                      /* exit never returns */

/* bit 3 of the exit code if SP is not what it was before the exception (x7) */
sp_check:
    mov     x11, sp
    cmp     x11, x7
    b.eq    6f
    orr     x22, x22, #8
6:  ret

msg_hello:
    .ascii  "el0: hello from EL0 (svc write)\n"
msg_hello_end:
msg_done:
    .ascii  "el0: stored and reloaded 0x0123456789abcdef after the page fault\n"
msg_done_end:
    .balign 4
el0_blob_end:

/*
 * uint64_t el0_enter(uint64_t entry, uint64_t sp_el0)
 * Saves the EL1 callee-saved context, erets to EL0t at `entry`.  Comes back
 * (as a normal return, x0 = exit code) when the exit syscall handler sends
 * the eret to el0_return at EL1h.
 */
    .global el0_enter, el0_return, el1_saved_sp
    .type el0_enter, %function
el0_enter:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    mov     x2, sp
    adrp    x3, el1_saved_sp
    str     x2, [x3, :lo12:el1_saved_sp]
    msr     elr_el1, x0
    msr     sp_el0, x1
    msr     spsr_el1, xzr           /* EL0t, DAIF clear */
    /* do not leak EL1 values to EL0 */
    mov     x0, xzr
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    mov     x19, xzr
    mov     x20, xzr
    mov     x21, xzr
    mov     x22, xzr
    mov     x23, xzr
    mov     x24, xzr
    mov     x25, xzr
    mov     x26, xzr
    mov     x27, xzr
    mov     x28, xzr
    mov     x29, xzr
    mov     x30, xzr
    isb
    eret
    .size el0_enter, . - el0_enter

    .type el0_return, %function
el0_return:                         /* EL1h, x0 = exit code */
    adrp    x3, el1_saved_sp
    ldr     x2, [x3, :lo12:el1_saved_sp]
    mov     sp, x2
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
    .size el0_return, . - el0_return

    .bss
    .balign 8
el1_saved_sp:
    .space  8
