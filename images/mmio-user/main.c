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

static uint64_t mmio_loop(uint64_t n, uint32_t *last)
{
    uint64_t t0, t1;
    uint32_t v;
    __asm__ volatile(
        "mov    x19, %[n]\n\t"
        "mov    x2, %[fr]\n\t"
        "mov    w1, #0xffffffff\n\t"
        "isb\n\t"
        "mrs    %[t0], cntvct_el0\n"
        "1:\n\t"
        "ldr    w1, [x2]\n\t"
        "subs   x19, x19, #1\n\t"
        "b.ne   1b\n\t"
        "isb\n\t"
        "mrs    %[t1], cntvct_el0\n\t"
        "mov    %w[v], w1\n"
        : [t0] "=&r"(t0), [t1] "=&r"(t1), [v] "=&r"(v)
        : [n] "r"(n), [fr] "r"(UART_BASE + UART_FR)
        : "x1", "x2", "x19", "cc", "memory");
    *last = v;
    return t1 - t0;
}

static uint64_t baseline_loop(uint64_t n)
{
    uint64_t t0, t1;
    __asm__ volatile(
        "mov    x19, %[n]\n\t"
        "mov    x2, %[fr]\n\t"
        "mov    w1, #0xffffffff\n\t"
        "isb\n\t"
        "mrs    %[t0], cntvct_el0\n"
        "1:\n\t"
        "subs   x19, x19, #1\n\t"
        "b.ne   1b\n\t"
        "isb\n\t"
        "mrs    %[t1], cntvct_el0\n"
        : [t0] "=&r"(t0), [t1] "=&r"(t1)
        : [n] "r"(n), [fr] "r"(UART_BASE + UART_FR)
        : "x1", "x2", "x19", "cc", "memory");
    return t1 - t0;
}

int main(void)
{
    uint64_t cpt = cycles_per_tick();
    uint32_t fr;

    mmio_loop(WARMUP, &fr);
    baseline_loop(WARMUP);

    uint64_t t = mmio_loop(ITER, &fr);
    uint64_t b = baseline_loop(ITER);
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
