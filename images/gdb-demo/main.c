/*
 * gdb-demo: a guest to debug with GDB (README "Debugging with GDB"); built with
 * debug information (-g), so GDB knows its functions, lines, types and variables.
 *
 * The boot CPU starts every other CPU of the DTB; each secondary adds its number
 * to `cpu_sum` and powers off.  Then accumulate(10) calls bump(i) for i = 1..10,
 * and bump() stores counter + i into the global `counter` (a watchpoint target),
 * so counter ends at 55 and accumulate() returns 1 + 3 + ... + 55 = 220.  Prints
 *     gdb-demo: cpus=<n> cpu_sum=<1+..+n-1> counter=55 sum=220 origin=(3,4)
 * and exits 0, or 1 if a value is wrong.
 */
#include "runtime.h"

struct point {
    long x, y;
};

volatile unsigned long counter;
struct point origin = { 3, 4 };
static volatile uint32_t cpu_sum, cpus_done;

__attribute__((noinline)) unsigned long bump(unsigned long step)
{
    counter = counter + step;
    return counter;
}

__attribute__((noinline)) unsigned long accumulate(unsigned n)
{
    unsigned long sum = 0;
    for (unsigned i = 1; i <= n; i++)
        sum += bump(i);
    return sum;
}

static void secondary(unsigned cpu)
{
    atomic_add_return(&cpu_sum, cpu);
    atomic_add_return(&cpus_done, 1);
}

int main(void)
{
    unsigned n = smp_cpu_count();
    secondary_main = secondary;
    for (unsigned i = 1; i < n; i++)
        smp_cpu_on(i);
    while (cpus_done != n - 1)
        ;
    unsigned long sum = accumulate(10);
    print("gdb-demo: cpus=%u cpu_sum=%u counter=%lu sum=%lu origin=(%ld,%ld)\n",
          n, cpu_sum, counter, sum, origin.x, origin.y);
    return counter == 55 && sum == 220 && cpu_sum == n * (n - 1) / 2 ? 0 : 1;
}
