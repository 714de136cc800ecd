/* compute-tick: images/compute under a 1 kHz virtual timer tick (the engine
 * benchmark's timer-guest line). */
#define TICK_HZ 1000
#include "../compute/main.c"
