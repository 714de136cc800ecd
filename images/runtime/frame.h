/* Exception frame layout shared by start.S and runtime.h. */
#ifndef ARMVIRT_FRAME_H
#define ARMVIRT_FRAME_H

#define STACK_SIZE   0x10000        /* 64 KiB */

/* SMP: up to MAX_CPUS CPUs; a secondary CPU's stack (indexed by its CPU
 * number, the PSCI CPU_ON context id) is SECONDARY_STACK_SIZE bytes. */
#define MAX_CPUS                8
#define SECONDARY_STACK_SHIFT   14
#define SECONDARY_STACK_SIZE    (1 << SECONDARY_STACK_SHIFT)   /* 16 KiB */
#define PSCI_CPU_OFF_FN         0x84000002

#define FRAME_X30    240            /* x0..x30 at 0..240 */
#define FRAME_SP_EL0 248
#define FRAME_ELR    256
#define FRAME_SPSR   264
#define FRAME_ESR    272
#define FRAME_FAR    280
#define FRAME_SIZE   288            /* multiple of 16 */

#endif
