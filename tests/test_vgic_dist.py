"""The emulated GICv2 distributor: every register's access rules (IHI 0048B 4.3)."""
import pytest

from gic.vgic import Vgic
from tests.gic_util import eq, new_vm

CTLR, TYPER, IIDR = 0x000, 0x004, 0x008
IGROUPR, ISENABLER, ICENABLER, ISPENDR, ICPENDR = 0x080, 0x100, 0x180, 0x200, 0x280
ISACTIVER, ICACTIVER, IPRIORITYR, ITARGETSR, ICFGR = 0x300, 0x380, 0x400, 0x800, 0xC00
SGIR, CPENDSGIR, SPENDSGIR = 0xF00, 0xF10, 0xF20
SPI = 40                       # bit 8 of the second 32-INTID register


def vm(nr_vcpus=2, **kw) -> Vgic:
    return new_vm(nr_vcpus=nr_vcpus, **kw)


# --- identification and control ----------------------------------------------------------------
@pytest.mark.parametrize("nr_vcpus,nr_spis,want",
                         [(1, 64, 0x02), (4, 64, 0x62), (8, 0, 0xE0), (2, 992, 0x3F)])
def test_typer(nr_vcpus, nr_spis, want):
    v = Vgic(nr_vcpus=nr_vcpus, nr_spis=nr_spis)
    eq(v.dist_read(0, TYPER, 4), want, f"GICD_TYPER for {nr_vcpus} CPUs, {nr_spis} SPIs")
    v.dist_write(0, TYPER, 4, 0xFFFFFFFF)
    eq(v.dist_read(0, TYPER, 4), want, "GICD_TYPER after a write (read-only)")


def test_iidr_and_id_registers():
    v = vm()
    eq(v.dist_read(0, IIDR, 4), 0x0200043B, "GICD_IIDR")
    v.dist_write(0, IIDR, 4, 0)
    eq(v.dist_read(0, IIDR, 4), 0x0200043B, "GICD_IIDR after a write (read-only)")
    eq(v.dist_read(0, 0xFE8, 4), 0x2B, "ICPIDR2: ArchRev 2")
    eq([v.dist_read(0, 0xFF0 + 4 * i, 4) for i in range(4)], [0x0D, 0xF0, 0x05, 0xB1], "component ID")
    eq(v.unhandled, [], "unhandled accesses")


def test_ctlr_has_two_group_enables():
    v = Vgic(nr_vcpus=1)
    eq(v.dist_read(0, CTLR, 4), 0, "GICD_CTLR at reset")
    v.dist_write(0, CTLR, 4, 0xFFFFFFFF)
    eq(v.dist_read(0, CTLR, 4), 0b11, "GICD_CTLR: EnableGrp0 | EnableGrp1, the rest RAZ/WI")


# --- 1-bit-per-interrupt registers ---------------------------------------------------------------
def test_igroupr_is_banked_for_private_interrupts():
    v = vm()
    v.dist_write(0, IGROUPR, 4, 0x8000_0001)
    v.dist_write(1, IGROUPR + 4, 4, 1 << 8)
    eq(v.dist_read(0, IGROUPR, 4), 0x8000_0001, "IGROUPR0 seen by vcpu0")
    eq(v.dist_read(1, IGROUPR, 4), 0, "IGROUPR0 seen by vcpu1")
    eq(v.dist_read(0, IGROUPR + 4, 4), 1 << 8, "IGROUPR1 (SPIs, global) seen by vcpu0")


def test_sgis_are_always_enabled():
    v = vm()
    eq(v.dist_read(0, ISENABLER, 4), 0xFFFF, "ISENABLER0 at reset: SGIs enabled")
    v.dist_write(0, ICENABLER, 4, 0xFFFFFFFF)
    eq(v.dist_read(0, ICENABLER, 4), 0xFFFF, "ICENABLER0 after clearing all: SGI bits RAO/WI")


def test_enable_bits_are_banked_for_ppis_and_global_for_spis():
    v = vm()
    v.dist_write(0, ISENABLER, 4, 1 << 27)
    eq(v.dist_read(0, ISENABLER, 4), 0xFFFF | 1 << 27, "ISENABLER0 vcpu0")
    eq(v.dist_read(1, ISENABLER, 4), 0xFFFF, "ISENABLER0 vcpu1")
    v.dist_write(1, ISENABLER + 4, 4, 1 << 8 | 1 << 9)
    eq(v.dist_read(0, ICENABLER + 4, 4), 0x300, "ICENABLER1 reads the SPI enables, from any CPU")
    v.dist_write(0, ICENABLER + 4, 4, 1 << 8)
    eq(v.dist_read(1, ISENABLER + 4, 4), 0x200, "ISENABLER1 after ICENABLER1")
    eq(v.dist_read(1, ISENABLER, 4), 0xFFFF, "writing 0 bits changes nothing")


def test_pending_registers():
    v = vm()
    v.dist_write(0, ISPENDR, 4, 0xFFFF | 1 << 27)
    eq(v.dist_read(0, ISPENDR, 4), 1 << 27, "ISPENDR0 vcpu0: SGI bits are not set through ISPENDR")
    eq(v.dist_read(1, ICPENDR, 4), 0, "ICPENDR0 vcpu1: PPIs are banked")
    v.send_sgi(1, 4, {0})
    eq(v.dist_read(0, ISPENDR, 4), 1 << 27 | 1 << 4, "ISPENDR0 shows a pending SGI")
    v.dist_write(0, ICPENDR, 4, 0xFFFFFFFF)
    eq(v.dist_read(0, ISPENDR, 4), 1 << 4, "ICPENDR0 clears the PPI, not the SGI")


@pytest.mark.parametrize("edge,want", [(True, 0), (False, 1 << 8)], ids=["edge", "level"])
def test_icpendr_leaves_a_level_interrupt_with_its_line_high_pending(edge, want):
    v = vm()
    v.dist_write(0, ICFGR + 8, 4, (2 if edge else 0) << 16)
    v.set_level(SPI, True)
    v.dist_write(0, ISPENDR + 4, 4, 1 << 8)
    v.dist_write(0, ICPENDR + 4, 4, 1 << 8)
    eq(v.dist_read(0, ISPENDR + 4, 4), want, "ISPENDR1 after ICPENDR with the line high (3.2.4)")


def test_active_registers():
    v = vm()
    v.dist_write(1, ISACTIVER, 4, 1 << 3 | 1 << 27)
    eq(v.dist_read(1, ISACTIVER, 4), 1 << 3 | 1 << 27, "ISACTIVER0 vcpu1")
    eq(v.dist_read(0, ISACTIVER, 4), 0, "ISACTIVER0 vcpu0")
    v.dist_write(0, ISACTIVER + 4, 4, 1 << 8)
    eq(v.dist_read(1, ICACTIVER + 4, 4), 1 << 8, "ICACTIVER1 reads SPI active state")
    v.dist_write(1, ICACTIVER, 4, 0xFFFFFFFF)
    v.dist_write(1, ICACTIVER + 4, 4, 0xFFFFFFFF)
    eq((v.dist_read(1, ISACTIVER, 4), v.dist_read(1, ISACTIVER + 4, 4)), (0, 0), "after ICACTIVER")


# --- byte-per-interrupt registers ------------------------------------------------------------------
def test_ipriorityr_byte_and_word_access_and_implemented_bits():
    v = vm()
    v.dist_write(0, IPRIORITYR + 27, 1, 0xFF)
    eq(v.dist_read(0, IPRIORITYR + 27, 1), 0xF8, "IPRIORITYR byte: 5 implemented bits")
    eq(v.dist_read(0, IPRIORITYR + 24, 4), 0xF8 << 24, "IPRIORITYR6 word on vcpu0")
    eq(v.dist_read(1, IPRIORITYR + 24, 4), 0, "IPRIORITYR6 word on vcpu1 (banked)")
    v.dist_write(1, IPRIORITYR + SPI, 4, 0x1122_3344)
    eq(v.dist_read(0, IPRIORITYR + SPI, 4), 0x1020_3040, "SPI priorities (global), low bits RAZ")
    eq(v.irq_state(SPI + 1, 0).priority, 0x30, "priority of INTID 41")


def test_itargetsr_private_reads_the_current_cpu_and_is_read_only():
    v = vm(nr_vcpus=4)
    for cpu in range(4):
        eq(v.dist_read(cpu, ITARGETSR + 28, 4), (1 << cpu) * 0x01010101, f"ITARGETSR7 on vcpu{cpu}")
    v.dist_write(2, ITARGETSR + 28, 4, 0xFFFFFFFF)
    eq(v.dist_read(2, ITARGETSR + 28, 1), 0b100, "ITARGETSR byte after a write (read-only)")


def test_itargetsr_spis_are_writable_with_byte_access():
    v = vm(nr_vcpus=2)
    eq(v.dist_read(0, ITARGETSR + SPI, 4), 0, "SPI targets at reset")
    v.dist_write(0, ITARGETSR + SPI + 1, 1, 0xFF)
    eq(v.dist_read(1, ITARGETSR + SPI, 4), 0x0300, "target bits of absent CPUs are RAZ/WI")
    v.dist_write(0, ITARGETSR + SPI, 4, 0x0102_0201)
    eq(v.dist_read(0, ITARGETSR + SPI + 2, 1), 0x02, "byte read")


def test_itargetsr_is_raz_wi_on_a_uniprocessor():
    v = Vgic(nr_vcpus=1)
    v.dist_write(0, ITARGETSR + SPI, 1, 0xFF)
    eq((v.dist_read(0, ITARGETSR, 4), v.dist_read(0, ITARGETSR + SPI, 1)), (0, 0),
       "(ITARGETSR0, SPI byte) on a uniprocessor (4.3.12)")
    v.dist_write(0, CTLR, 4, 1)
    v.dist_write(0, ISENABLER + 4, 4, 1 << 8)
    v.set_level(SPI, True)
    eq(v.has_pending(0), True, "the SPI targets the only CPU")


# --- configuration ----------------------------------------------------------------------------------
def test_icfgr0_is_read_only_edge():
    v = vm()
    eq(v.dist_read(0, ICFGR, 4), 0xAAAAAAAA, "ICFGR0: SGIs edge")
    v.dist_write(0, ICFGR, 4, 0)
    eq(v.dist_read(0, ICFGR, 4), 0xAAAAAAAA, "ICFGR0 after a write")


def test_icfgr1_is_banked_and_bit0_is_raz():
    v = vm()
    eq(v.dist_read(0, ICFGR + 4, 4), 0, "ICFGR1 at reset: PPIs level")
    v.dist_write(0, ICFGR + 4, 4, 0xFFFFFFFF)
    eq(v.dist_read(0, ICFGR + 4, 4), 0xAAAAAAAA, "ICFGR1 vcpu0 after writing ones")
    eq(v.dist_read(1, ICFGR + 4, 4), 0, "ICFGR1 vcpu1")
    eq(v.irq_state(20, 0).config, "edge", "PPI 20 config on vcpu0")


def test_icfgr_spi_config_selects_the_behaviour():
    v = vm()
    v.dist_write(0, ICFGR + 8, 4, 2 << 16)              # INTID 40 edge
    eq(v.dist_read(0, ICFGR + 8, 4), 2 << 16, "ICFGR2")
    eq((v.irq_state(SPI, 0).config, v.irq_state(SPI + 1, 0).config), ("edge", "level"), "configs")


# --- SGIs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,want", [
    (0 << 24 | 0b1010 << 16 | 5, {1: 0b0001, 3: 0b0001}),       # target list, from CPU 0
    (0 << 24 | 0xF0 << 16 | 5, {}),                              # absent CPUs only
    (1 << 24 | 5, {1: 1, 2: 1, 3: 1}),                           # all but self
    (2 << 24 | 0xFF << 16 | 5, {0: 1}),                          # self only
    (0 << 24 | 1 << 16 | 1 << 15 | 5, {0: 1}),                   # NSATT ignored
])
def test_sgir_target_list_filter(value, want):
    v = vm(nr_vcpus=4)
    v.dist_write(0, SGIR, 4, value)
    got = {c: v.irq_state(5, c).source for c in range(4) if v.irq_state(5, c).source}
    eq(got, want, f"SGI 5 sources per target after GICD_SGIR = {value:#x}")
    eq(v.unhandled, [], "unhandled accesses")


def test_sgir_reserved_filter_sends_nothing_and_is_recorded():
    v = vm(nr_vcpus=2)
    v.dist_write(0, SGIR, 4, 3 << 24 | 0xFF << 16 | 1)
    eq([v.irq_state(1, c).source for c in range(2)], [0, 0], "sources")
    eq(v.unhandled, [(SGIR, True)], "recorded")
    eq(v.dist_read(0, SGIR, 4), 0, "GICD_SGIR is write-only: reads 0")


def test_spendsgir_and_cpendsgir():
    v = vm(nr_vcpus=4)
    v.dist_write(0, SGIR, 4, 0b0010 << 16 | 6)           # SGI 6 from CPU 0 to CPU 1
    eq(v.dist_read(1, SPENDSGIR + 4, 4), 0b01 << 16, "SPENDSGIR1 on vcpu1: SGI 6 from CPU 0")
    eq(v.dist_read(0, SPENDSGIR + 4, 4), 0, "SPENDSGIR1 on vcpu0 (banked)")
    v.dist_write(1, SPENDSGIR + 6, 1, 0xFC)              # sources 2, 3 (4-7 absent)
    eq(v.dist_read(1, CPENDSGIR + 6, 1), 0b1101, "CPENDSGIR byte: sources 0, 2, 3")
    v.dist_write(1, CPENDSGIR + 4, 4, 0b0101 << 16)
    eq(v.irq_state(6, 1).source, 0b1000, "source bitmap after CPENDSGIR")
    eq(v.dist_read(1, ISPENDR, 4), 1 << 6, "ISPENDR0 still shows SGI 6 pending")
    v.dist_write(1, CPENDSGIR + 6, 1, 0xFF)
    eq(v.dist_read(1, ISPENDR, 4), 0, "ISPENDR0 after clearing every source")


# --- what is not a register -----------------------------------------------------------------------
@pytest.mark.parametrize("offset,size", [
    (0x00C, 4), (0x040, 4), (0xD00, 4), (0xF04, 4), (0xF30, 4), (0xFCC, 4), (0x7FC, 4), (0xBFC, 4),
    (ISENABLER + 12, 4),          # INTIDs 96-127: not implemented with 64 SPIs
    (IPRIORITYR + 100, 1),        # INTID 100: not implemented
    (CTLR, 2), (ISENABLER, 1), (ICFGR, 8), (IPRIORITYR, 2), (IPRIORITYR + 2, 4),  # sizes, alignment
])
def test_non_registers_are_raz_wi_and_recorded(offset, size):
    v = vm()
    before = [v.dist_read(0, o, 4) for o in (CTLR, ISENABLER, ICFGR, IPRIORITYR)]
    eq(v.dist_read(0, offset, size), 0, f"read of {offset:#x} size {size}")
    v.dist_write(0, offset, size, 0xFFFFFFFF)
    eq(v.unhandled, [(offset, False), (offset, True)], "recorded (offset, is_write)")
    eq([v.dist_read(0, o, 4) for o in (CTLR, ISENABLER, ICFGR, IPRIORITYR)], before, "registers after")


def test_security_registers_are_raz_wi_registers():
    v = vm()
    v.dist_write(0, 0xE00, 4, 0xFFFFFFFF)
    eq((v.dist_read(0, 0xE00, 4), v.unhandled), (0, []), "(GICD_NSACR0, unhandled): no Security Extensions")


def test_the_unhandled_list_is_never_replaced():
    v = vm()
    ref = v.unhandled
    v.dist_read(0, 0xD00, 4)
    ref.clear()                                         # the bus drains it in place
    v.dist_read(0, 0xD04, 4)
    eq(v.unhandled is ref, True, "same list object")
    eq(ref, [(0xD04, False)], "entries after draining")
