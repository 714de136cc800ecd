/*
 * mmio-user: cost of an MMIO read that exits to the user-space device model:
 * the DeviceID register of the board's first virtio-mmio transport (a 32-bit
 * `ldr w1, [x2]` with x2 = 0x0a000008), as KVM/ARM's developers' in-guest
 * benchmark times it (virtio 1.x 4.2.2; 0 = no device behind the transport).
 *
 * Checks MagicValue (0x74726976) first, then times ITER reads in a tight loop,
 * times the identical loop without the load, and reports the difference per
 * read in CPU cycles:
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
    uint64_t addr = VIRTIO_MMIO_BASE + VIRTIO_MMIO_DEVICE_ID;
    uint32_t magic = mmio_read32(VIRTIO_MMIO_BASE + VIRTIO_MMIO_MAGIC);
    uint32_t version = mmio_read32(VIRTIO_MMIO_BASE + VIRTIO_MMIO_VERSION);
    uint32_t id;

    if (magic != VIRTIO_MMIO_MAGIC_VALUE) {
        print("mmio_user: ERROR: virtio-mmio MagicValue at 0x%lx is 0x%x, expected 0x%x\n",
              VIRTIO_MMIO_BASE, magic, VIRTIO_MMIO_MAGIC_VALUE);
        return 1;
    }
    uint64_t t, b;
    uint64_t avg = mmio_read_bench(addr, WARMUP, ITER, cpt, &id, &t, &b);

    print("mmio_user: virtio-mmio@0x%lx version=%u DeviceID=%u loop_ticks=%lu baseline_ticks=%lu "
          "cycles_per_tick=%lu\n", VIRTIO_MMIO_BASE, version, id, t, b, cpt);
    print("BENCH mmio_user avg_cycles=%lu iterations=%u\n", avg, (unsigned)ITER);
    return 0;
}
