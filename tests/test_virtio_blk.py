"""virtio-blk behind the virtio-mmio transport (virtio 1.2: 4.2.2 registers, 4.2.3 device
initialization, 2.7 split virtqueue, 5.2 block device): the driver's side written out
here against guest memory of memory slots, as Linux's virtio_mmio / virtio_blk drive it."""
from __future__ import annotations

import os
import struct

import pytest

from armvirt import cli, paths
from armvirt.devices import virtio_mmio as vm
from armvirt.devices.virtio_blk import (QUEUE_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR,
                                        VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
                                        VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VirtioBlk)
from armvirt.devices.virtqueue import (VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
                                       ChainError, DmaError, GuestMemory, Virtqueue)
from armvirt.qemu_args import BlockDrive, parse_block_devices
from host_kernel.memslots import MemSlot, MemSlots

RAM, RAM_SIZE = 0x4000_0000, 0x10_0000
DESC, AVAIL, USED = RAM + 0x1000, RAM + 0x2000, RAM + 0x3000
HDR, DATA, STATUS = RAM + 0x8000, RAM + 0x10000, RAM + 0x9000
SECTORS = 64


class Guest:
    """Guest RAM in one memory slot, a disk image, the device on its transport and the
    driver's bookkeeping (next free descriptor, the avail index)."""

    def __init__(self, tmp_path, readonly=False, num=8, sectors=SECTORS):
        self.slots = MemSlots()
        self.ram = bytearray(RAM_SIZE)
        self.slots.add(MemSlot(RAM, RAM_SIZE, 0x80_0000_0000, self.ram))
        self.img = tmp_path / "disk.img"
        self.img.write_bytes(bytes(range(256)) * (sectors * 2))
        self.logged, self.irqs, self.charges = [], [], []
        self.blk = VirtioBlk(str(self.img), readonly, GuestMemory(self.slots), log=self.logged.append,
                             charge=lambda key, what: self.charges.append(key))
        self.dev = vm.VirtioMmio(backend=self.blk, log=self.logged.append, irq=self.irqs.append)
        self.num, self.avail_idx = num, 0

    def w(self, off, v):
        self.dev.write(off, 4, v)

    def r(self, off):
        return self.dev.read(off, 4)

    def mem(self, ipa, n):
        return bytes(self.ram[ipa - RAM:ipa - RAM + n])

    def poke(self, ipa, data):
        self.ram[ipa - RAM:ipa - RAM + len(data)] = data

    def init(self, features=None):
        """4.2.3.1 / 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue 0, DRIVER_OK."""
        self.w(vm.STATUS, 0)
        self.w(vm.STATUS, vm.ACKNOWLEDGE)
        self.w(vm.STATUS, vm.ACKNOWLEDGE | vm.DRIVER)
        offered = self.features()
        want = offered if features is None else features
        for sel in (0, 1):
            self.w(vm.DRIVER_FEATURES_SEL, sel)
            self.w(vm.DRIVER_FEATURES, want >> 32 * sel & 0xFFFF_FFFF)
        self.w(vm.STATUS, vm.ACKNOWLEDGE | vm.DRIVER | vm.FEATURES_OK)
        ok = self.r(vm.STATUS) & vm.FEATURES_OK
        self.w(vm.QUEUE_SEL, 0)
        self.w(vm.QUEUE_NUM, self.num)
        for lo, addr in ((vm.QUEUE_DESC_LOW, DESC), (vm.QUEUE_DRIVER_LOW, AVAIL), (vm.QUEUE_DEVICE_LOW, USED)):
            self.w(lo, addr & 0xFFFF_FFFF)
            self.w(lo + 4, addr >> 32)
        self.w(vm.QUEUE_READY, 1)
        self.w(vm.STATUS, vm.ACKNOWLEDGE | vm.DRIVER | vm.FEATURES_OK | vm.DRIVER_OK)
        return ok

    def features(self):
        out = 0
        for sel in (0, 1):
            self.w(vm.DEVICE_FEATURES_SEL, sel)
            out |= self.r(vm.DEVICE_FEATURES) << 32 * sel
        return out

    def submit(self, bufs, head=0):
        """Descriptors head, head+1, ... chained (addr, len, write), made available."""
        for i, (addr, length, write) in enumerate(bufs):
            idx = (head + i) % self.num
            nxt = (head + i + 1) % self.num
            flags = (VIRTQ_DESC_F_WRITE if write else 0) | (VIRTQ_DESC_F_NEXT if i < len(bufs) - 1 else 0)
            self.poke(DESC + 16 * idx, struct.pack("<QIHH", addr, length, flags, nxt))
        self.poke(AVAIL + 4 + 2 * (self.avail_idx % self.num), struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.poke(AVAIL + 2, struct.pack("<H", self.avail_idx))
        self.w(vm.QUEUE_NOTIFY, 0)

    def request(self, rtype, sector, data_len, write_data=False, head=0, data_addr=DATA):
        self.poke(HDR, struct.pack("<IIQ", rtype, 0, sector))
        self.poke(STATUS, b"\xee")
        bufs = [(HDR, 16, False)]
        if data_len:
            bufs.append((data_addr, data_len, not write_data))
        bufs.append((STATUS, 1, True))
        self.submit(bufs, head)
        return self.mem(STATUS, 1)[0]

    def used(self, i):
        uidx = struct.unpack("<H", self.mem(USED + 2, 2))[0]
        elem = struct.unpack("<II", self.mem(USED + 4 + 8 * (i % self.num), 8))
        return uidx, elem


@pytest.fixture
def guest(tmp_path):
    g = Guest(tmp_path)
    yield g
    g.blk.close()


def test_identification_and_features(guest):
    got = (guest.r(vm.MAGIC_VALUE), guest.r(vm.VERSION), guest.r(vm.DEVICE_ID), guest.r(vm.VENDOR_ID))
    want = (0x74726976, 2, 2, 0x554D4551)
    assert got == want, f"expected Magic/Version/DeviceID/VendorID {want}, got {got}"
    f = guest.features()
    for bit in (32, 9, 2, 6):
        assert f >> bit & 1, f"expected feature bit {bit} offered, features {f:#x}"
    assert not f >> VIRTIO_BLK_F_RO & 1, f"a writable drive must not offer VIRTIO_BLK_F_RO, features {f:#x}"
    guest.w(vm.QUEUE_SEL, 0)
    assert guest.r(vm.QUEUE_NUM_MAX) == QUEUE_SIZE, f"QueueNumMax: expected {QUEUE_SIZE}, got {guest.r(vm.QUEUE_NUM_MAX)}"
    guest.w(vm.QUEUE_SEL, 1)
    assert guest.r(vm.QUEUE_NUM_MAX) == 0, f"queue 1 does not exist: expected QueueNumMax 0, got {guest.r(vm.QUEUE_NUM_MAX)}"


def test_capacity_in_config_space(guest):
    lo, hi = guest.dev.read(vm.CONFIG, 4), guest.dev.read(vm.CONFIG + 4, 4)
    cap = lo | hi << 32
    assert cap == SECTORS, f"capacity: expected {SECTORS} sectors (image {os.path.getsize(guest.img)} bytes), got {cap}"
    blk_size = guest.dev.read(vm.CONFIG + 20, 4)
    assert blk_size == 512, f"blk_size: expected 512, got {blk_size}"
    seg_max = guest.dev.read(vm.CONFIG + 12, 4)
    assert seg_max == QUEUE_SIZE - 2, f"seg_max: expected {QUEUE_SIZE - 2}, got {seg_max}"
    b = guest.dev.read(vm.CONFIG, 1)
    assert b == SECTORS & 0xFF, f"1-byte config read: expected {SECTORS & 0xFF}, got {b}"


def test_features_ok_refused_without_version_1(guest):
    ok = guest.init(features=1 << VIRTIO_BLK_F_FLUSH)
    assert ok == 0, f"FEATURES_OK without VIRTIO_F_VERSION_1: expected it cleared, Status {guest.r(vm.STATUS):#x}"
    ok = guest.init(features=guest.features() | 1 << 40)
    assert ok == 0, "FEATURES_OK with a feature not offered: expected it cleared"
    assert guest.init() == vm.FEATURES_OK, f"FEATURES_OK with the offered features: expected kept, Status {guest.r(vm.STATUS):#x}"


def test_read_request_and_interrupt(guest):
    guest.init()
    status = guest.request(VIRTIO_BLK_T_IN, 2, 1024)
    assert status == VIRTIO_BLK_S_OK, f"status: expected OK (0), got {status}"
    want = guest.img.read_bytes()[1024:2048]
    assert guest.mem(DATA, 1024) == want, "read data: expected sectors 2-3 of the image in the buffer"
    uidx, (uid, ulen) = guest.used(0)
    assert (uidx, uid, ulen) == (1, 0, 1025), f"used ring: expected idx 1, id 0, len 1025, got {uidx}, {uid}, {ulen}"
    assert guest.r(vm.INTERRUPT_STATUS) == 1, f"InterruptStatus: expected 1, got {guest.r(vm.INTERRUPT_STATUS)}"
    assert guest.irqs == [True], f"expected the SPI raised once, got {guest.irqs}"
    guest.w(vm.INTERRUPT_ACK, 1)
    assert guest.irqs == [True, False], f"InterruptACK: expected the line lowered, got {guest.irqs}"
    assert guest.charges.count("virtio_blk_request") == 1 and guest.charges.count("virtqueue_desc") == 3, \
        f"expected one request and three descriptors charged, got {guest.charges}"
    assert guest.charges.count("blk_file_io") == 1 and guest.charges.count("blk_copy_page") == 1, \
        f"expected one file read and one page copied charged, got {guest.charges}"


def test_write_goes_to_the_file_and_flush(guest):
    guest.init()
    guest.poke(DATA, b"\x5a" * 512)
    status = guest.request(VIRTIO_BLK_T_OUT, 5, 512, write_data=True)
    assert status == VIRTIO_BLK_S_OK, f"write status: expected OK, got {status}"
    got = guest.img.read_bytes()[5 * 512:6 * 512]
    assert got == b"\x5a" * 512, f"image sector 5: expected 0x5a bytes, got {got[:8].hex()}..."
    status = guest.request(VIRTIO_BLK_T_FLUSH, 0, 0)
    assert status == VIRTIO_BLK_S_OK, f"flush status: expected OK, got {status}"
    assert "blk_flush" in guest.charges, f"expected the flush charged, got {guest.charges}"
    status = guest.request(VIRTIO_BLK_T_GET_ID, 0, 20)
    assert status == VIRTIO_BLK_S_OK and guest.mem(DATA, 20) == bytes(20), \
        f"GET_ID: expected OK and 20 zero bytes (no serial), got {status}, {guest.mem(DATA, 20).hex()}"
    status = guest.request(99, 0, 0)
    assert status == VIRTIO_BLK_S_UNSUPP, f"unknown type: expected UNSUPP (2), got {status}"


def test_readonly_drive(tmp_path):
    g = Guest(tmp_path, readonly=True)
    try:
        assert g.features() >> VIRTIO_BLK_F_RO & 1, f"readonly=on: expected VIRTIO_BLK_F_RO, features {g.features():#x}"
        g.init()
        before = g.img.read_bytes()
        status = g.request(VIRTIO_BLK_T_OUT, 0, 512, write_data=True)
        assert status == VIRTIO_BLK_S_IOERR, f"write to a read-only drive: expected IOERR (1), got {status}"
        assert g.img.read_bytes() == before, "a read-only drive's image must not change"
        assert any("read-only" in m for m in g.logged), f"expected the refused write logged, got {g.logged}"
    finally:
        g.blk.close()


def test_bad_ipa_is_ioerr_and_logged(guest):
    guest.init()
    status = guest.request(VIRTIO_BLK_T_IN, 0, 512, data_addr=0x1000_0000)
    assert status == VIRTIO_BLK_S_IOERR, f"buffer outside RAM: expected IOERR (1), got {status}"
    assert any("outside guest RAM" in m for m in guest.logged), f"expected a guest error logged, got {guest.logged}"
    uidx, (uid, ulen) = guest.used(0)
    assert (uidx, ulen) == (1, 1), f"used: expected idx 1 and len 1 (the status byte), got {uidx}, {ulen}"
    status = guest.request(VIRTIO_BLK_T_IN, 1, 512)
    assert status == VIRTIO_BLK_S_OK, f"the next request: expected OK, got {status}"


@pytest.mark.parametrize("sector,n,why", [(SECTORS, 512, "past the capacity"), (SECTORS - 1, 1024, "past the capacity"),
                                          (0, 100, "whole number")])
def test_range_checks(guest, sector, n, why):
    guest.init()
    status = guest.request(VIRTIO_BLK_T_IN, sector, n)
    assert status == VIRTIO_BLK_S_IOERR, f"read of {n} bytes at sector {sector}: expected IOERR, got {status}"
    assert any(why in m for m in guest.logged), f"expected a log naming {why!r}, got {guest.logged}"


def test_write_flag_checks(guest):
    """A read (IN) into a device-readable buffer has no writable data: IOERR at the status."""
    guest.init()
    status = guest.request(VIRTIO_BLK_T_OUT, 0, 512, write_data=False)     # OUT data marked WRITE
    assert status == VIRTIO_BLK_S_OK, f"OUT with a writable data buffer carries 0 bytes: expected OK, got {status}"
    guest.poke(HDR, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 0))
    guest.poke(STATUS, b"\xee")
    guest.submit([(HDR, 16, False), (STATUS, 1, True), (DATA, 512, False)], head=4)    # readable after writable
    assert any("device-readable after a device-writable" in m for m in guest.logged), \
        f"expected the ordering error logged, got {guest.logged}"
    assert guest.blk.broken, "a malformed chain must put the device in need of a reset"
    got = (guest.r(vm.STATUS) & vm.DEVICE_NEEDS_RESET, guest.r(vm.INTERRUPT_STATUS) & vm.INT_CONFIG)
    assert got == (vm.DEVICE_NEEDS_RESET, vm.INT_CONFIG), \
        f"expected DEVICE_NEEDS_RESET and ISR bit 1 (config change), got {got}"
    guest.init()
    assert not guest.blk.broken, "Status = 0 must reset the device"


def test_ring_index_wraps(tmp_path):
    """The avail and used indexes are free-running 16-bit counters (2.7.6, 2.7.8)."""
    g = Guest(tmp_path, num=4)
    try:
        g.init()
        g.avail_idx = 0xFFFE
        g.poke(AVAIL + 2, struct.pack("<H", 0xFFFE))
        g.blk.queues[0].last_avail = g.blk.queues[0].used_idx = 0xFFFE
        for i in range(4):
            status = g.request(VIRTIO_BLK_T_IN, i, 512, head=(i * 3) % 4)
            assert status == VIRTIO_BLK_S_OK, f"request {i} across the wrap: expected OK, got {status}"
        uidx = struct.unpack("<H", g.mem(USED + 2, 2))[0]
        assert uidx == 2, f"used idx after 4 requests from 0xfffe: expected 2 (wrapped), got {uidx:#x}"
        ids = [struct.unpack("<I", g.mem(USED + 4 + 8 * (i % 4), 4))[0] for i in (0xFFFE, 0xFFFF, 0, 1)]
        assert ids == [0, 3, 2, 1], f"used ids in ring order: expected [0, 3, 2, 1], got {ids}"
    finally:
        g.blk.close()


def test_no_interrupt_flag_and_reset(guest):
    guest.init()
    guest.poke(AVAIL, struct.pack("<H", VIRTQ_AVAIL_F_NO_INTERRUPT))
    guest.request(VIRTIO_BLK_T_IN, 0, 512)
    assert guest.r(vm.INTERRUPT_STATUS) == 0 and guest.irqs == [], \
        f"VIRTQ_AVAIL_F_NO_INTERRUPT: expected no interrupt, got ISR {guest.r(vm.INTERRUPT_STATUS)}, {guest.irqs}"
    guest.poke(AVAIL, b"\0\0")
    guest.request(VIRTIO_BLK_T_IN, 0, 512)
    assert guest.irqs == [True], f"expected the line raised, got {guest.irqs}"
    guest.w(vm.STATUS, 0)
    q = guest.blk.queues[0]
    got = (guest.r(vm.STATUS), guest.r(vm.INTERRUPT_STATUS), guest.r(vm.QUEUE_READY), q.last_avail, q.desc)
    assert got == (0, 0, 0, 0, 0), f"after Status = 0: expected status, ISR, ready, last_avail, desc all 0, got {got}"
    assert guest.irqs == [True, False], f"reset must lower the line, got {guest.irqs}"


def test_notify_before_driver_ok_is_ignored(guest):
    guest.w(vm.QUEUE_NOTIFY, 0)
    assert any("before DRIVER_OK" in m for m in guest.logged), f"expected a log line, got {guest.logged}"


def test_virtqueue_chain_errors():
    slots, ram = MemSlots(), bytearray(RAM_SIZE)
    slots.add(MemSlot(RAM, RAM_SIZE, 0, ram))
    mem, q = GuestMemory(slots), Virtqueue(4)
    q.num, q.desc, q.driver, q.device, q.ready = 4, DESC, AVAIL, USED, True

    def put(i, addr, length, flags, nxt):
        off = DESC - RAM + 16 * i
        ram[off:off + 16] = struct.pack("<QIHH", addr, length, flags, nxt)

    def avail(head):
        idx = struct.unpack_from("<H", ram, AVAIL - RAM + 2)[0]
        struct.pack_into("<H", ram, AVAIL - RAM + 4 + 2 * (idx % 4), head)
        struct.pack_into("<H", ram, AVAIL - RAM + 2, idx + 1)

    put(0, DATA, 8, VIRTQ_DESC_F_NEXT, 1)
    put(1, DATA, 8, VIRTQ_DESC_F_NEXT, 0)               # a loop
    avail(0)
    with pytest.raises(ChainError, match="loop"):
        q.pop(mem)
    put(2, DATA, 8, VIRTQ_DESC_F_NEXT, 9)               # past the table
    avail(2)
    with pytest.raises(ChainError, match="chains to 9"):
        q.pop(mem)
    avail(7)
    with pytest.raises(ChainError, match="names descriptor 7"):
        q.pop(mem)
    assert q.pop(mem) is None, "no more available chains: expected None"
    q.desc = 0x1000                                     # the table outside RAM
    avail(0)
    with pytest.raises(DmaError, match="outside guest RAM"):
        q.pop(mem)


# --- the command line: -drive if=none and -device virtio-blk-device (QEMU's syntax) --------------
HELLO = paths.image_path("hello.elf")


def _cli_error(capsys, *args):
    rc = cli.main(["run", *args])
    out, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, \
        f"{args}: expected exit 2 and one line, got {rc}: {err!r}"
    return err


@pytest.fixture
def disk(tmp_path):
    p = tmp_path / "d.img"
    p.write_bytes(bytes(4096))
    return str(p)


def test_drive_and_device_reach_the_config(disk):
    items = [("-drive", f"if=none,id=hd0,file={disk},format=raw,readonly=on")]
    got = parse_block_devices(items, ["virtio-blk-device,drive=hd0"], 1)
    want = (BlockDrive("hd0", disk, True, ""),)
    assert got == want, f"expected {want}, got {got}"
    assert parse_block_devices(items, [], 1) == (), "a drive no -device uses puts no disk on the board"


@pytest.mark.parametrize("args,needle", [
    (["-drive", "if=virtio,file={d}"], "armvirt has no PCI"),
    (["-drive", "file={d}"], "-drive if=none,id=ID,file=F,format=raw -device virtio-blk-device,drive=ID"),
    (["-drive", "if=ide,file={d}"], "if=ide is not supported"),
    (["-drive", "if=none,file={d}"], "id=ID is required"),
    (["-drive", "if=none,id=hd0,file={d},format=qcow2", "-device", "virtio-blk-device,drive=hd0"],
     "format=qcow2 is not supported"),
    (["-drive", "if=none,id=hd0,file=/nonexistent.img", "-device", "virtio-blk-device,drive=hd0"],
     "Could not open '/nonexistent.img': No such file or directory"),
    (["-drive", "if=none,id=hd0,file={d}", "-device", "virtio-blk-device,drive=hd1"], "can't find value 'hd1'"),
    (["-drive", "if=none,id=hd0,file={d}", "-device", "virtio-blk-device,drive=hd0",
      "-device", "virtio-blk-device,drive=hd0"], "it's in use"),
    (["-drive", "if=none,id=hd0,file={d}", "-drive", "if=none,id=hd1,file={d}",
      "-device", "virtio-blk-device,drive=hd0", "-device", "virtio-blk-device,drive=hd1"],
     "no free virtio-mmio transport"),
    (["-drive", "if=none,id=hd0,file={d}", "-drive", "if=none,id=hd0,file={d}"], "Duplicate ID 'hd0'"),
    (["-device", "virtio-blk-pci,drive=hd0"], "armvirt has no PCI"),
    (["-device", "virtio-net-device"], "'virtio-net-device' is not a valid device model name"),
    (["-device", "virtio-blk-device"], "drive property not set"),
])
def test_bad_drive_and_device_options_are_one_line(capsys, disk, args, needle):
    err = _cli_error(capsys, *[a.format(d=disk) for a in args], HELLO)
    assert needle in err, f"expected {needle!r} in {err!r}"
    assert err.startswith("armvirt: error: -d"), f"the line must name the option: {err!r}"


def test_device_leaves_the_dtb_alone(tmp_path, disk):
    """The transport's node is in every DTB (QEMU's first transport): a disk adds none."""
    plain, with_disk = tmp_path / "a.dtb", tmp_path / "b.dtb"
    assert cli.main(["run", "-M", f"virt,dumpdtb={plain}", HELLO]) == 0
    assert cli.main(["run", "-M", f"virt,dumpdtb={with_disk}", "-drive", f"if=none,id=hd0,file={disk}",
                     "-device", "virtio-blk-device,drive=hd0", HELLO]) == 0
    a, b = plain.read_bytes(), with_disk.read_bytes()
    assert a == b, f"expected the same DTB with and without the disk ({len(a)} vs {len(b)} bytes)"


def test_device_help_lists_virtio_blk(capsys):
    rc = cli.main(["run", "-device", "help"])
    out = capsys.readouterr().out
    assert rc == 0 and 'name "virtio-blk-device"' in out, f"-device help: expected exit 0 and the device, got {rc}: {out!r}"
