/*
 * compute: deterministic CPU-bound workload for engine benchmarks.
 *
 * Each round runs an integer sieve, a bitwise CRC-32 and a small integer
 * matrix multiply, all seeded by the round number, and folds the results into
 * one 64-bit checksum.  Touches nothing but RAM, the UART DR and PSCI (via
 * exit_status), so the same ELF also runs on a bare CPU emulator where the
 * UART is plain memory and an hvc just stops the run.
 *
 * Knob: COMPUTE_ROUNDS (compile time, make CFLAGS_compute=-DCOMPUTE_ROUNDS=n)
 * initialises the global `compute_rounds`, which is read at run time, so a
 * harness can also patch that symbol (a 32-bit word in .data) in the ELF.
 * About 1.34 million guest instructions per round: the default 224 rounds run
 * ~300 million instructions (counted on bare Unicorn).
 */
#include "runtime.h"

#ifndef COMPUTE_ROUNDS
#define COMPUTE_ROUNDS 224
#endif

volatile uint32_t compute_rounds = COMPUTE_ROUNDS;

#define SIEVE_N   65536
#define CRC_BYTES 4096
#define MAT_N     24

static uint8_t sieve_buf[SIEVE_N];
static uint8_t crc_buf[CRC_BYTES];
static uint32_t mat_a[MAT_N][MAT_N], mat_b[MAT_N][MAT_N], mat_c[MAT_N][MAT_N];

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* number of primes below n, mixed with the largest one */
static uint64_t sieve(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        sieve_buf[i] = 1;
    sieve_buf[0] = sieve_buf[1] = 0;
    for (uint32_t i = 2; i * i < n; i++)
        if (sieve_buf[i])
            for (uint32_t j = i * i; j < n; j += i)
                sieve_buf[j] = 0;
    uint64_t count = 0, last = 0;
    for (uint32_t i = 0; i < n; i++)
        if (sieve_buf[i]) {
            count++;
            last = i;
        }
    return (count << 32) | last;
}

static uint32_t crc32_bitwise(const uint8_t *p, uint32_t n, uint32_t crc)
{
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint64_t matmul(uint64_t *seed)
{
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            mat_a[i][j] = (uint32_t)xorshift64(seed);
            mat_b[i][j] = (uint32_t)xorshift64(seed);
        }
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            uint32_t s = 0;
            for (int k = 0; k < MAT_N; k++)
                s += mat_a[i][k] * mat_b[k][j];
            mat_c[i][j] = s;
        }
    uint64_t h = 0;
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++)
            h = (h ^ mat_c[i][j]) * 0x100000001B3ULL;
    return h;
}

#ifdef TICK_HZ
/* compute-tick: the same work under a periodic virtual timer interrupt, as a
 * guest kernel's scheduler tick would run it. */
static volatile uint64_t ticks, tick_period;

static int tick(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack_wanted(INTID_VTIMER);
    if (iar == GIC_NOT_WANTED)
        return 1;
    ticks++;
    cntv_cval_write(cntv_cval_read() + tick_period);   /* no drift */
    gic_eoi(iar);
    return 1;
}

static void start_tick(void)
{
    irq_handler = tick;
    tick_period = read_cntfrq() / TICK_HZ;
    gic_init();
    gic_enable_irq(INTID_VTIMER);
    cntv_cval_write(read_cntvct() + tick_period);
    cntv_ctl_write(CNTV_CTL_ENABLE);
    local_irq_enable();
}
#endif

int main(void)
{
    uint32_t rounds = compute_rounds;
    uint64_t sum = 0xcbf29ce484222325ULL;
    uint32_t crc = 0;

    print("compute: rounds=%u\n", rounds);
#ifdef TICK_HZ
    start_tick();
#endif
    for (uint32_t r = 0; r < rounds; r++) {
        uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(r + 1) << 17);
        for (uint32_t i = 0; i < CRC_BYTES; i += 8) {
            uint64_t v = xorshift64(&seed);
            for (int b = 0; b < 8; b++)
                crc_buf[i + b] = (uint8_t)(v >> (8 * b));
        }
        crc = crc32_bitwise(crc_buf, CRC_BYTES, crc);
        uint64_t primes = sieve(SIEVE_N - (r & 255));
        uint64_t mat = matmul(&seed);
        sum = (sum ^ crc) * 0x100000001B3ULL;
        sum = (sum ^ primes) * 0x100000001B3ULL;
        sum = (sum ^ mat) * 0x100000001B3ULL;
    }
#ifdef TICK_HZ
    local_irq_disable();
    cntv_ctl_write(0);
    print("compute: ticks=%lu at %u Hz, spurious=%u\n", ticks, TICK_HZ,
          irq_tally.spurious + irq_tally.unexpected);
#endif
    print("compute: checksum=0x%016lx\n", sum);
    return 0;
}
