"""PL031 RTC (ARM DDI 0224): a fixed epoch plus virtual seconds, never the host clock;
load, match interrupt as a VMM timer, IDs."""
from __future__ import annotations

import pytest

from armvirt import paths
from armvirt.console import Console
from armvirt.devices import pl031 as R
from armvirt.devices.pl011 import DeviceError
from armvirt.machine import Machine, MachineConfig
from engine import layout

HZ = 1000                  # 1000 cycles a second, for round numbers


def rtc():
    levels = []
    r = R.Pl031(seconds=lambda c: c // HZ, cycles_at=lambda s: s * HZ, irq=levels.append)
    return r, levels


def eq(got, want, what):
    assert got == want, f"{what}: expected {want!r}, got {got!r}"


def test_counts_virtual_seconds_from_the_epoch():
    r, _ = rtc()
    eq([r.read(R.RTCDR, 4, now=c) for c in (0, 999, 1000, 61_500)], [R.EPOCH, R.EPOCH, R.EPOCH + 1, R.EPOCH + 61],
       "RTCDR = EPOCH + whole virtual seconds")
    eq(r.read(R.RTCCR, 4), 1, "RTCCR: always running")


def test_load_sets_the_count_from_then_on():
    r, _ = rtc()
    r.write(R.RTCLR, 4, 1_000_000, now=5_500)
    eq((r.read(R.RTCDR, 4, now=5_500), r.read(R.RTCDR, 4, now=8_000), r.read(R.RTCLR, 4)),
       (1_000_000, 1_000_003, 1_000_000),
       "count after a load, at 8 s (seconds tick on the same boundaries, as QEMU's), and RTCLR")


def test_match_interrupt_is_a_timer_at_that_second():
    r, levels = rtc()
    eq(r.deadline(), 2**64 - 1, "no match armed at reset")
    r.write(R.RTCIMSC, 4, 1)
    r.write(R.RTCMR, 4, R.EPOCH + 10, now=3_200)
    eq(r.deadline(), 10 * HZ, "match when the count reaches RTCMR: second 10")
    r.event(9_999)
    eq((r.read(R.RTCRIS, 4), levels), (0, []), "not yet")
    r.event(10_000)
    eq((r.read(R.RTCRIS, 4), r.read(R.RTCMIS, 4), levels), (1, 1, [True]), "RIS, MIS and the line at the match")
    r.write(R.RTCICR, 4, 1)
    eq((r.read(R.RTCRIS, 4), levels), (0, [True, False]), "ICR clears it")
    r.write(R.RTCMR, 4, r.read(R.RTCDR, 4, now=12_000), now=12_000)
    eq(r.deadline(), 12_000, "a match equal to the count fires at once (QEMU)")


def test_identification_and_bad_offsets():
    r, _ = rtc()
    eq([r.read(o, 4) for o in range(0xFE0, 0x1000, 4)], [0x31, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1],
       "PeriphID and PrimeCell ID as QEMU's")
    with pytest.raises(DeviceError, match="0x1c"):
        r.read(R.RTCICR, 4)
    with pytest.raises(DeviceError, match="0x0"):
        r.write(R.RTCDR, 4, 1)


def test_alarm_is_a_vmm_event_and_raises_spi_2(xgene):
    m = Machine(MachineConfig(kernel=paths.image_path("hello.elf")), xgene, console=Console(echo=False))
    hz = xgene.cntfrq_hz
    m.rtc.write(R.RTCIMSC, 4, 1)
    m.rtc.write(R.RTCMR, 4, R.EPOCH + 3, now=0)
    want = m.host.counter.cycles_for(3 * hz)
    eq(m.vmm_deadline(), want, "the VMM's next event: the RTC match, 3 virtual seconds in")
    m.vmm_event(want, 2**64 - 1)
    irq = m.vm.vgic.irq_state(layout.SPI_BASE + layout.RTC_SPI, 0)
    eq((irq.line_level, m.vmm_deadline()), (True, 2**64 - 1), "SPI 2's line is high, nothing more pending")
