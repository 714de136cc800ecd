/* Exception frame layout shared by start.S and runtime.h. */
#ifndef ARMVIRT_FRAME_H
#define ARMVIRT_FRAME_H

#define STACK_SIZE   0x10000        /* 64 KiB */

#define FRAME_X30    240            /* x0..x30 at 0..240 */
#define FRAME_SP_EL0 248
#define FRAME_ELR    256
#define FRAME_SPSR   264
#define FRAME_ESR    272
#define FRAME_FAR    280
#define FRAME_SIZE   288            /* multiple of 16 */

#endif
