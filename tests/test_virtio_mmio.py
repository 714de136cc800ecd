"""The virtio-mmio transport with no device (virtio 1.x 4.2.2), as QEMU's empty transports
answer: the identification registers, zero elsewhere, writes ignored, 32-bit accesses only."""
import pytest

from armvirt.devices.virtio_mmio import DEVICE_ID, MAGIC_VALUE, VENDOR_ID, VERSION, VirtioMmio


def test_identification_registers():
    dev = VirtioMmio()
    got = {off: dev.read(off, 4) for off in (MAGIC_VALUE, VERSION, DEVICE_ID, VENDOR_ID)}
    want = {MAGIC_VALUE: 0x74726976, VERSION: 2, DEVICE_ID: 0, VENDOR_ID: 0x554D4551}
    assert got == want, f"expected {want}, got {got}"


@pytest.mark.parametrize("offset", [0x010, 0x034, 0x060, 0x070, 0x0FC, 0x100, 0x1FC])
def test_other_registers_read_zero_and_writes_are_ignored(offset):
    dev, logged = VirtioMmio(), []
    dev.log = logged.append
    dev.write(offset, 4, 0xFFFF_FFFF)
    dev.write(0x070, 4, 0xFF)                 # Status: no device to drive
    assert dev.read(offset, 4) == 0, f"offset {offset:#x}: expected 0, got {dev.read(offset, 4):#x}"
    assert dev.read(DEVICE_ID, 4) == 0, "DeviceID must stay 0 (no device)"
    assert logged == [], f"expected nothing logged for 32-bit accesses, got {logged}"


@pytest.mark.parametrize("size", [1, 2])
def test_narrow_accesses_read_zero_and_are_logged(size):
    dev, logged = VirtioMmio(), []
    dev.log = logged.append
    assert dev.read(MAGIC_VALUE, size) == 0, f"a {size}-byte read of MagicValue must read 0"
    dev.write(0x070, size, 1)
    assert len(logged) == 2 and all(f"{size}-byte" in m for m in logged), f"expected 2 log lines, got {logged}"


def test_guest_sees_the_transport_at_0x0a000000(boot):
    """mmio-user reads MagicValue, Version and DeviceID through the VMM's bus."""
    res = boot("mmio-user.elf")
    line = next((l for l in res.console.lines if l.startswith("mmio_user: virtio-mmio@0xa000000")), None)
    assert line is not None and "version=2 DeviceID=0" in line, res.console.text
