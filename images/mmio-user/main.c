/*
 * mmio-user: cost of an MMIO read that exits to the user-space device model
 * (PL011 FR, a 32-bit `ldr w1, [x2]` with x2 = 0x09000018).
 *
 * Times ITER reads in a tight loop, times the identical loop without the load,
 * and reports the difference per read in CPU cycles:
 *   avg_cycles = round(((t1 - t0) - (b1 - b0)) * cycles_per_tick / ITER)
 */
#include "runtime.h"

#ifndef ITER
#define ITER 1000
#endif
#define WARMUP 16

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint32_t fr;

    mmio_read32_loop(WARMUP, UART_BASE + UART_FR, &fr);
    mmio_baseline_loop(WARMUP, UART_BASE + UART_FR);

    uint64_t t = mmio_read32_loop(ITER, UART_BASE + UART_FR, &fr);
    uint64_t b = mmio_baseline_loop(ITER, UART_BASE + UART_FR);
    int64_t dticks = (int64_t)(t - b);
    uint64_t avg = 0;
    if (dticks > 0)
        avg = ((uint64_t)dticks * cpt + ITER / 2) / ITER;

    print("mmio_user: FR=0x%x TXFF=%u loop_ticks=%lu baseline_ticks=%lu cycles_per_tick=%lu\n",
          fr, (fr & UART_FR_TXFF) ? 1u : 0u, t, b, cpt);
    if (fr & UART_FR_TXFF) {
        print("mmio_user: ERROR: FR.TXFF set in the value read (FR=0x%x)\n", fr);
        return 1;
    }
    print("BENCH mmio_user avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
