/*
 * serial-in: input from the PL011 (polled and interrupt-driven) and an environment
 * from an initrd, as a bare-metal program on QEMU's virt board gets them.
 *
 * 1. The initrd: /chosen linux,initrd-start/-end (fdt_initrd()).  It holds
 *    KEY=VALUE lines; prints `serial-in: initrd 0x<start>+<size>, <n> variables`
 *    and `env <KEY>=<VALUE>` for each, or `serial-in: no initrd`.
 * 2. The RTC: the PL031 (found by compatible "arm,pl031") RTCDR, `serial-in: rtc=<n>`.
 * 3. Polling: RX interrupts masked, prints `poll> ` and reads one line by polling
 *    UARTFR.RXFE, then `poll: got '<line>' (<n> chars)`.
 * 4. Interrupts, twice: FIFOs on (LCR_H.FEN, 8N1 at 115200), RX trigger 1/2,
 *    UARTIMSC = RXIM|RTIM, the UART's SPI (from the DTB's pl011 node) enabled at the
 *    GIC; prints `irq> ` and waits in WFI.  The handler counts RX level (RXMIS) and
 *    RX timeout (RTMIS) interrupts and drains the FIFO until a newline.  Prints
 *    `irq: got '<line>' (<n> chars, rx_irqs=<a> rt_irqs=<b>)`.
 * A wait gives up after POLL_MS (20 ms: every poll is an exit, so it is kept short)
 * or WAIT_MS (1 s: the virtual timer wakes the WFI) of virtual time, printing
 * `poll: timeout` or `irq: timeout`, and the image exits 1; otherwise 0.  (armvirt
 * gives an interrupt-driven guest a line once its output has been quiet 0.1 s.)
 */
#include "runtime.h"

#define UART_IBRD   0x24
#define UART_FBRD   0x28
#define UART_LCR_H  0x2c
#define UART_CR     0x30
#define UART_IFLS   0x34
#define UART_IMSC   0x38
#define UART_MIS    0x40
#define UART_ICR    0x44
#define FR_RXFE     (1u << 4)
#define INT_RX      (1u << 4)
#define INT_RT      (1u << 6)
#define LINE_MAX    80
#define POLL_MS     20
#define WAIT_MS     1000
#define MAX_VARS    8

static volatile uint32_t rx_irqs, rt_irqs, timer_fired, line_len, line_done;
static char line[LINE_MAX + 1];
static unsigned uart_intid;

static void take(char c)
{
    if (line_done)
        return;
    if (c == '\n' || c == '\r') {
        line_done = 1;
        return;
    }
    if (line_len < LINE_MAX)
        line[line_len++] = c;
}

static int irq(struct exc_frame *f)
{
    (void)f;
    uint32_t iar = gic_ack();
    unsigned id = GIC_INTID(iar);
    if (id == uart_intid) {
        uint32_t mis = mmio_read32(UART_BASE + UART_MIS);
        if (mis & INT_RX)
            rx_irqs++;
        if (mis & INT_RT)
            rt_irqs++;
        while (!(mmio_read32(UART_BASE + UART_FR) & FR_RXFE))
            take((char)(mmio_read32(UART_BASE + UART_DR) & 0xff));
        mmio_write32(UART_BASE + UART_ICR, INT_RX | INT_RT);
    } else if (id == INTID_VTIMER) {
        cntv_ctl_write(0);
        timer_fired = 1;
    }
    if (id < GIC_SPURIOUS)
        gic_eoi(iar);
    return 1;
}

static uint64_t ms_ticks(unsigned ms)
{
    return read_cntfrq() / 1000 * ms;
}

static void read_env(void)
{
    uint64_t start, end;
    if (!fdt_initrd(&start, &end)) {
        print("serial-in: no initrd\n");
        return;
    }
    const char *p = (const char *)(uintptr_t)start, *e = (const char *)(uintptr_t)end;
    const char *vars[MAX_VARS];
    unsigned lens[MAX_VARS], n = 0;
    while (p < e && n < MAX_VARS) {
        const char *q = p;
        while (q < e && *q != '\n')
            q++;
        const char *eq = p;
        while (eq < q && *eq != '=')
            eq++;
        if (eq < q && eq > p) {
            vars[n] = p;
            lens[n++] = (unsigned)(q - p);
        }
        p = q + 1;
    }
    print("serial-in: initrd 0x%lx+%lu, %u variables\n", start, end - start, n);
    for (unsigned i = 0; i < n; i++) {
        puts("env ");
        for (unsigned k = 0; k < lens[i]; k++)
            putc(vars[i][k]);
        putc('\n');
    }
}

static void reset_line(void)
{
    line_len = line_done = 0;
    rx_irqs = rt_irqs = 0;
}

static int poll_line(void)
{
    reset_line();
    print("poll> ");
    uint64_t give_up = read_cntvct() + ms_ticks(POLL_MS);
    while (!line_done) {
        if (mmio_read32(UART_BASE + UART_FR) & FR_RXFE) {
            if (read_cntvct() > give_up) {
                print("\npoll: timeout\n");
                return 0;
            }
            continue;
        }
        take((char)(mmio_read32(UART_BASE + UART_DR) & 0xff));
    }
    line[line_len] = 0;
    print("poll: got '%s' (%u chars)\n", line, line_len);
    return 1;
}

static int irq_line(void)
{
    reset_line();
    timer_fired = 0;
    print("irq> ");
    cntv_cval_write(read_cntvct() + ms_ticks(WAIT_MS));
    cntv_ctl_write(CNTV_CTL_ENABLE);
    mmio_write32(UART_BASE + UART_IMSC, INT_RX | INT_RT);
    local_irq_enable();
    while (!line_done && !timer_fired)
        __asm__ volatile("wfi" ::: "memory");
    local_irq_disable();
    mmio_write32(UART_BASE + UART_IMSC, 0);
    cntv_ctl_write(0);
    if (!line_done) {
        print("\nirq: timeout\n");
        return 0;
    }
    line[line_len] = 0;
    print("irq: got '%s' (%u chars, rx_irqs=%u rt_irqs=%u)\n", line, line_len, rx_irqs, rt_irqs);
    return 1;
}

int main(void)
{
    read_env();
    uint64_t rtc;
    uint32_t rtc_intid;
    if (fdt_find_compatible("arm,pl031", &rtc, &rtc_intid))
        print("serial-in: rtc=%u\n", mmio_read32(rtc));
    uint64_t base;
    if (!fdt_find_compatible("arm,pl011", &base, &uart_intid) || base != UART_BASE) {
        print("serial-in: ERROR: no pl011 at 0x%lx in the DTB\n", UART_BASE);
        return 1;
    }
    int ok = poll_line();

    mmio_write32(UART_BASE + UART_IBRD, 13);             /* 115200 baud at 24 MHz */
    mmio_write32(UART_BASE + UART_FBRD, 1);
    mmio_write32(UART_BASE + UART_LCR_H, 0x70);          /* 8 bits, FIFOs on */
    mmio_write32(UART_BASE + UART_IFLS, 2u << 3 | 2u);   /* RX and TX trigger at 1/2 */
    mmio_write32(UART_BASE + UART_CR, 0x301);            /* UARTEN, TXE, RXE */
    irq_handler = irq;
    gic_init();
    gic_set_priority(uart_intid, 0xA0);
    gic_enable_irq(uart_intid);
    gic_set_priority(INTID_VTIMER, 0xA0);
    gic_enable_irq(INTID_VTIMER);
    print("serial-in: uart intid=%u gic=v%d\n", uart_intid, gic_version());
    ok = irq_line() && ok;
    ok = irq_line() && ok;
    return ok ? 0 : 1;
}
