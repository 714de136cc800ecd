"""Guest physical memory map of the `virt` board (QEMU hw/arm/virt.c, base_memmap).

    0x0000_0000 +--------------------+
                | flash bank 0       |  CFI01 (Intel) 64 MiB: -bios / -drive if=pflash,unit=0;
    0x0400_0000 | flash bank 1       |  -drive unit=1.  Read/executed in place (a read-only
                |                    |  memory slot); writes exit to the VMM's device model.
                |                    |  Fitted only with one of those: else accesses abort
    0x0800_0000 +--------------------+
                | GIC distributor    |  in-kernel device (MMIO exit, stays in host kernel)
    0x0801_0000 | GICv2 CPU iface    |  stage-2 maps GICV here when the vGIC is on
    0x0803_0000 | GICv2 GICH (host)  |  never mapped for a guest
    0x0804_0000 | GICv2 GICV (host)  |
    0x080A_0000 | GICv3 redists      |  0x20000 per CPU
    0x0900_0000 +--------------------+
                | PL011 UART         |  user-space device (MMIO exit to the VMM)
    0x0901_0000 | PL031 RTC          |  user-space device
    0x0A00_0000 | virtio-mmio        |  transport 0 (empty, or -device virtio-blk-device): user space
    0x0B00_0000 | bench-io           |  in-kernel test device with a back end (I/O latency)
    0x4000_0000 +--------------------+
                | RAM (-m)           |  memory slot, stage-2 mapped on first touch
                +--------------------+
    2^39        end of the guest IPA space (VTCR_EL2.T0SZ = 25)
    0x80_0000_0000 host memory (stage-2 tables): outside every guest IPA
"""
from __future__ import annotations

FLASH_BASE, FLASH_SIZE = 0x0000_0000, 0x0800_0000
FLASH_BANK_SIZE = FLASH_SIZE // 2                     # two banks (QEMU virt_flash_map)
FLASH_SECTOR_SIZE = 0x4_0000                          # 256 KiB (QEMU VIRT_FLASH_SECTOR_SIZE)
FLASH_BANK_WIDTH, FLASH_DEVICE_WIDTH = 4, 2           # a 32-bit bank of two x16 parts
GIC_DIST_BASE, GIC_DIST_SIZE = 0x0800_0000, 0x0001_0000
GIC_CPU_BASE, GIC_CPU_SIZE = 0x0801_0000, 0x0001_0000
GIC_HYP_BASE, GIC_HYP_SIZE = 0x0803_0000, 0x0001_0000
GIC_VCPU_BASE, GIC_VCPU_SIZE = 0x0804_0000, 0x0001_0000
GIC_REDIST_BASE, GIC_REDIST_SIZE = 0x080A_0000, 0x00F6_0000
GIC_REDIST_STRIDE = 0x2_0000
UART_BASE, UART_SIZE = 0x0900_0000, 0x0000_1000
RTC_BASE, RTC_SIZE = 0x0901_0000, 0x0000_1000
VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE, VIRTIO_MMIO_COUNT = 0x0A00_0000, 0x200, 32
VIRTIO_MMIO_MODELED = 1                               # transports armvirt has (QEMU: 32)
BENCH_IO_BASE, BENCH_IO_SIZE = 0x0B00_0000, 0x1000     # free on QEMU virt (virtio ends at 0x0A00_4000)
RAM_BASE = 0x4000_0000

# Devices of QEMU's virt board that armvirt does not model (hw/arm/virt.c base_memmap):
# an access gets what an access to nothing gets (a synchronous external abort, as QEMU
# gives for unassigned addresses) and a line under -d unimp naming what is missing.
QEMU_VIRT_UNMODELED = (
    (0x0802_0000, 0x0000_1000, "QEMU virt's GICv2m MSI frame"),
    (0x0808_0000, 0x0002_0000, "QEMU virt's GICv3 ITS"),
    (0x0902_0000, 0x0000_0018, "QEMU virt's fw_cfg"),
    (0x0903_0000, 0x0000_1000, "QEMU virt's PL061 GPIO"),
    (VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE * (VIRTIO_MMIO_COUNT - 1),
     "QEMU virt's virtio-mmio transports 1-31"),
    (0x0C00_0000, 0x0200_0000, "QEMU virt's platform bus"),
    (0x1000_0000, 0x2EFF_0000, "QEMU virt's PCIe MMIO window"),
    (0x3EFF_0000, 0x0001_0000, "QEMU virt's PCIe I/O window"),
    (0x3F00_0000, 0x0100_0000, "QEMU virt's PCIe ECAM"),
)


def unmodeled(ipa: int) -> str | None:
    """The QEMU virt device at `ipa` that armvirt does not model, or None."""
    return next((what for base, size, what in QEMU_VIRT_UNMODELED if base <= ipa < base + size), None)
RAM_MAX = 255 * 1024**3          # QEMU virt: RAM ends below 256 GiB
IPA_BITS = 39
HOST_MEM_BASE = 0x80_0000_0000    # host-private physical memory (stage-2 tables)
HOST_MEM_SIZE = 0x0100_0000

# Where loaders put things inside RAM (QEMU hw/arm/boot.c conventions).
KERNEL_TEXT_OFFSET = 0x8_0000     # raw binary / Image load offset
DTB_MAX_SIZE = 0x20_0000          # booting.rst: a DTB is at most 2 MiB

# Interrupt IDs (GIC INTID) as on `virt`.
PPI_BASE, SPI_BASE = 16, 32
INTID_MAINTENANCE = 25
INTID_HYP_TIMER = 26
INTID_VIRT_TIMER = 27
INTID_SEC_PHYS_TIMER = 29
INTID_PHYS_TIMER = 30
UART_SPI = 1                      # INTID 33
RTC_SPI = 2                       # INTID 34
VIRTIO_MMIO_SPI = 16              # INTID 48: transport 0's (QEMU: SPIs 16-47, one per transport)
BENCH_IO_SPI = 48                 # INTID 80: after virtio-mmio's SPIs 16-47
BENCH_IO_INTID = SPI_BASE + BENCH_IO_SPI
