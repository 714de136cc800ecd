"""The GICv2 virtual CPU interface (GICV_*) on the live GICH registers
(IHI 0048B chapter 5, with the GICC semantics of 4.4; 3.3 for priorities)."""
import pytest

from gic.lr import LR_STATE_ACTIVE, LR_STATE_INVALID, LR_STATE_PENDING, LR_STATE_PENDING_ACTIVE, ListReg
from gic.v2_hyp import GICH_LR0, HCR_EN, HCR_LRENPIE, MISR_EOI, MISR_LRENP, GichV2
from gic.v2_vcpuif import (GICV_ABPR, GICV_AEOIR, GICV_AHPPIR, GICV_AIAR, GICV_APR0, GICV_BPR, GICV_CTLR,
                           GICV_DIR, GICV_EOIR, GICV_HPPIR, GICV_IAR, GICV_IIDR, GICV_PMR, GICV_RPR,
                           VirtualCpuInterface)
from tests.gic_util import eq, gicv_on

P, A, PA, INV = LR_STATE_PENDING, LR_STATE_ACTIVE, LR_STATE_PENDING_ACTIVE, LR_STATE_INVALID
EOIMODE = 1 << 9


def put(gich: GichV2, *lrs: ListReg) -> None:
    for i, lr in enumerate(lrs):
        gich.lr[i] = lr.encode()


def state(gich: GichV2, i: int) -> int:
    return ListReg.decode(gich.lr[i]).state


def setup(*lrs: ListReg, ctlr: int = 1, pmr: int = 0xF8):
    g = GichV2(4)
    put(g, *lrs)
    return g, gicv_on(g, ctlr=ctlr, pmr=pmr)


# --- acknowledge ---------------------------------------------------------------------------------------
def test_spurious_when_nothing_is_pending():
    g, v = setup(ListReg(40, A, 0x10))
    eq(v.read(GICV_IAR, 4), 1023, "IAR with only an active LR")
    eq(v.read(GICV_HPPIR, 4), 1023, "HPPIR with only an active LR")
    eq(v.irq_line(), False, "virtual IRQ")


@pytest.mark.parametrize("hcr,ctlr", [(0, 1), (HCR_EN, 0)], ids=["HCR.En=0", "VMGrp0En=0"])
def test_spurious_when_the_interface_or_group_is_disabled(hcr, ctlr):
    g, v = setup(ListReg(40, P, 0x10), ctlr=ctlr)
    g.hcr = hcr
    eq((v.read(GICV_HPPIR, 4), v.irq_line(), v.read(GICV_IAR, 4)), (1023, False, 1023),
       "(HPPIR, irq_line, IAR)")
    eq(state(g, 0), P, "LR state unchanged")


def test_iar_activates_the_highest_priority_pending_lr():
    g, v = setup(ListReg(40, P, 0x80), ListReg(41, P, 0x20), ListReg(42, P, 0x40))
    eq(v.read(GICV_HPPIR, 4), 41, "HPPIR")
    eq(state(g, 1), P, "HPPIR does not acknowledge")
    eq(v.read(GICV_IAR, 4), 41, "IAR")
    eq([state(g, i) for i in range(3)], [P, A, P], "LR states after IAR")
    eq(g.apr, 1 << (0x20 >> 3), "GICH_APR: the preemption level of priority 0x20")
    eq(v.read(GICV_RPR, 4), 0x20, "RPR")


def test_sgi_iar_carries_the_source_cpu():
    g, v = setup(ListReg(3, P, 0x10, source_cpu=5))
    eq(v.read(GICV_IAR, 4), 3 | 5 << 10, "IAR of SGI 3 from CPU 5")
    v.write(GICV_EOIR, 4, 3 | 4 << 10)
    eq(state(g, 0), A, "EOI naming another source CPU does not deactivate")
    g.apr = 1 << 2
    v.write(GICV_EOIR, 4, 3 | 5 << 10)
    eq(state(g, 0), INV, "EOI with the right source CPU deactivates")


@pytest.mark.parametrize("pmr,signalled", [(0x80, False), (0x88, True), (0x00, False), (0xF8, True)])
def test_priority_mask(pmr, signalled):
    g, v = setup(ListReg(40, P, 0x80), pmr=pmr)
    eq(v.irq_line(), signalled, f"irq_line with priority 0x80, PMR {pmr:#x}")
    eq(v.read(GICV_IAR, 4), 40 if signalled else 1023, f"IAR with PMR {pmr:#x}")


def test_running_priority_blocks_equal_and_lower_priorities():
    g, v = setup(ListReg(40, P, 0x80), ListReg(41, P, 0x80), ListReg(42, P, 0x90))
    eq(v.read(GICV_IAR, 4), 40, "first IAR")
    eq((v.irq_line(), v.read(GICV_IAR, 4)), (False, 1023),
       "(irq_line, IAR) for equal priority while 0x80 runs")
    eq(v.read(GICV_HPPIR, 4), 41, "HPPIR ignores the running priority")
    put_higher = ListReg(43, P, 0x78)
    g.lr[3] = put_higher.encode()
    eq((v.irq_line(), v.read(GICV_IAR, 4)), (True, 43), "(irq_line, IAR) for a higher priority: preemption")
    eq(v.read(GICV_RPR, 4), 0x78, "RPR while nested")
    v.write(GICV_EOIR, 4, 43)
    eq(v.read(GICV_RPR, 4), 0x80, "RPR back to the preempted interrupt")


@pytest.mark.parametrize("bpr,preempts", [(2, True), (4, False)])
def test_binary_point_decides_preemption(bpr, preempts):
    """BPR 4: group priority [7:5], 0x98 and 0x88 are both group 0x80 (3.3.3)."""
    g, v = setup(ListReg(40, A, 0x98), ListReg(41, P, 0x88))
    v.write(GICV_BPR, 4, bpr)
    g.apr = 1 << ((0x98 & (0xFF << (bpr + 1)) & 0xFF) >> 3)
    eq(v.irq_line(), preempts, f"irq_line with BPR {bpr}")
    eq(v.read(GICV_IAR, 4), 41 if preempts else 1023, f"IAR with BPR {bpr}")


def test_group1_uses_ackctl_and_the_aliases():
    g, v = setup(ListReg(40, P, 0x10, group1=True), ctlr=0b10)
    eq(v.read(GICV_HPPIR, 4), 1022, "HPPIR for group 1 with AckCtl = 0")
    eq(v.read(GICV_IAR, 4), 1022, "IAR for group 1 with AckCtl = 0")
    eq(state(g, 0), P, "not acknowledged")
    eq(v.read(GICV_AHPPIR, 4), 40, "AHPPIR")
    eq(v.read(GICV_AIAR, 4), 40, "AIAR acknowledges group 1")
    v.write(GICV_AEOIR, 4, 40)
    eq((state(g, 0), g.apr), (INV, 0), "(LR state, APR) after AEOIR")
    g.lr[0] = ListReg(41, P, 0x10, group1=True).encode()
    v.write(GICV_CTLR, 4, 0b110)                       # AckCtl
    eq(v.read(GICV_IAR, 4), 41, "IAR for group 1 with AckCtl = 1")
    g.lr[1] = ListReg(42, P, 0x08).encode()             # group 0, but only group 1 is enabled
    eq(v.read(GICV_AIAR, 4), 1023, "AIAR: nothing of an enabled group can preempt")


def test_group0_as_fiq_does_not_raise_the_irq_line():
    g, v = setup(ListReg(40, P, 0x10), ctlr=0b1001)    # EnableGrp0, FIQEn
    eq(v.irq_line(), False, "irq_line for a group 0 interrupt signalled as FIQ")


# --- end of interrupt, deactivation ----------------------------------------------------------------------
def test_eoimode0_drops_priority_and_deactivates():
    g, v = setup(ListReg(40, P, 0x40, eoi=True))
    v.read(GICV_IAR, 4)
    v.write(GICV_EOIR, 4, 40)
    eq((state(g, 0), g.apr, v.read(GICV_RPR, 4)), (INV, 0, 0xFF), "(LR state, APR, RPR) after EOIR")
    eq((g.eisr, g.misr & MISR_EOI), (1, MISR_EOI), "(EISR, MISR.EOI) for an LR with the EOI bit")


def test_eoi_of_a_pending_active_lr_leaves_it_pending():
    g, v = setup(ListReg(40, PA, 0x40))
    g.apr = 1 << (0x40 >> 3)
    v.write(GICV_EOIR, 4, 40)
    eq((state(g, 0), g.apr), (P, 0), "(LR state, APR)")
    eq(v.read(GICV_IAR, 4), 40, "the pending part can be taken now")


def test_eoimode1_splits_priority_drop_and_deactivation():
    g, v = setup(ListReg(40, P, 0x40), ctlr=1 | EOIMODE)
    v.read(GICV_IAR, 4)
    v.write(GICV_EOIR, 4, 40)
    eq((state(g, 0), g.apr, v.read(GICV_RPR, 4)), (A, 0, 0xFF), "(LR, APR, RPR) after EOIR with EOImode 1")
    v.write(GICV_DIR, 4, 40)
    eq(state(g, 0), INV, "LR state after GICV_DIR")


def test_dir_with_eoimode0_is_ignored():
    g, v = setup(ListReg(40, A, 0x40))
    v.write(GICV_DIR, 4, 40)
    eq((state(g, 0), g.hcr >> 27), (A, 0), "(LR state, EOICount) after DIR with EOImode 0")


@pytest.mark.parametrize("split", [False, True], ids=["EOIR", "DIR"])
def test_hw_deactivation_callback(split):
    g, v = setup(ListReg(27, P, 0xA0, hw=True, pintid=30), ctlr=1 | (EOIMODE if split else 0))
    seen = []
    v.on_hw_deactivate = seen.append
    eq(v.read(GICV_IAR, 4), 27, "IAR")
    v.write(GICV_EOIR, 4, 27)
    eq(seen, [] if split else [30], "callbacks after EOIR")
    if split:
        v.write(GICV_DIR, 4, 27)
        eq(seen, [30], "callbacks after DIR")
    eq((state(g, 0), g.eisr), (INV, 0), "(LR state, EISR): a HW LR asks for no EOI maintenance")


def test_eoi_without_a_matching_lr_counts_for_lrenp():
    g, v = setup(ListReg(40, P, 0x40))
    g.hcr |= HCR_LRENPIE
    v.read(GICV_IAR, 4)
    v.write(GICV_EOIR, 4, 77)
    eq((g.hcr >> 27, g.misr & MISR_LRENP), (1, MISR_LRENP), "(EOICount, MISR.LRENP)")
    eq((state(g, 0), g.apr), (A, 0), "(LR state, APR): the priority was dropped, LR 0 untouched")
    v.write(GICV_CTLR, 4, 1 | EOIMODE)
    v.write(GICV_DIR, 4, 78)
    eq(g.hcr >> 27, 2, "EOICount after a DIR that matched no LR")


def test_eoicount_wraps_in_five_bits():
    g, v = setup(ctlr=1 | EOIMODE)
    for _ in range(33):
        v.write(GICV_DIR, 4, 77)
    eq(g.hcr >> 27, 1, "EOICount after 33 unmatched deactivations")
    eq(g.hcr & HCR_EN, HCR_EN, "the other HCR bits are kept")


def test_spurious_eoi_is_ignored():
    g, v = setup(ListReg(40, P, 0x40))
    v.read(GICV_IAR, 4)
    v.write(GICV_EOIR, 4, 1023)
    eq((state(g, 0), g.apr, g.hcr >> 27), (A, 1 << 8, 0), "(LR state, APR, EOICount) after EOIR 1023")


def test_eoi_with_an_empty_apr_deactivates_but_is_not_counted():
    g, v = setup(ListReg(40, A, 0x40))
    v.write(GICV_EOIR, 4, 40)
    eq((state(g, 0), g.hcr >> 27), (INV, 0), "(LR state, EOICount) after EOIR 40 with an empty APR")
    v.write(GICV_EOIR, 4, 41)
    eq(g.hcr >> 27, 0, "EOICount after EOIR 41 (no LR) with an empty APR")


# --- registers -------------------------------------------------------------------------------------------
def test_ctlr_pmr_bpr_abpr_are_views_of_vmcr():
    g = GichV2(4)
    v = VirtualCpuInterface(g)
    eq((v.read(GICV_BPR, 4), v.read(GICV_ABPR, 4)), (2, 3), "(BPR, ABPR) minimums with VMCR = 0")
    v.write(GICV_CTLR, 4, 0xFFFFFFFF)
    eq(g.vmcr, 0x21F, "VMCR after CTLR = ~0: Grp0En, Grp1En, AckCtl, FIQEn, CBPR, EOImode")
    eq(v.read(GICV_CTLR, 4), 0x21F, "CTLR")
    v.write(GICV_PMR, 4, 0xFF)
    eq((v.read(GICV_PMR, 4), g.vmcr >> 27), (0xF8, 0x1F), "(PMR, VMCR.VMPriMask)")
    v.write(GICV_BPR, 4, 5)
    v.write(GICV_ABPR, 4, 6)
    eq((g.vmcr >> 21 & 7, g.vmcr >> 18 & 7), (5, 6), "(VMCR.VMBP, VMCR.VMABP)")
    v.write(GICV_BPR, 4, 0)
    v.write(GICV_ABPR, 4, 0)
    eq((v.read(GICV_BPR, 4), v.read(GICV_ABPR, 4)), (2, 3), "(BPR, ABPR) written below the minimum")
    eq(v.read(GICV_CTLR, 4), 0x21F, "CTLR untouched by the other views")


def test_iidr_apr0_and_rpr_idle():
    g = GichV2(4)
    v = VirtualCpuInterface(g)
    eq(v.read(GICV_IIDR, 4), 0x0202043B, "GICV_IIDR")
    eq(v.read(GICV_RPR, 4), 0xFF, "RPR when idle")
    v.write(GICV_APR0, 4, 0x30)
    eq((g.apr, v.read(GICV_APR0, 4), v.read(GICV_RPR, 4)), (0x30, 0x30, 0x20), "(GICH_APR, APR0, RPR)")


def test_read_only_and_write_only_registers():
    g, v = setup(ListReg(40, P, 0x40))
    for off in (GICV_IAR, GICV_RPR, GICV_HPPIR, GICV_IIDR):
        v.write(off, 4, 0xFFFFFFFF)
    eq((g.lr[0] >> 28, g.vmcr & 0x21F), (P, 1), "(LR state, CTLR) after writes to read-only registers")
    eq((v.read(GICV_EOIR, 4), v.read(GICV_DIR, 4)), (0, 0), "write-only registers read 0")
    eq(v.unhandled, [], "registers are not recorded as unhandled")


@pytest.mark.parametrize("offset,size", [(0x2C, 4), (0x100, 4), (0xFF8, 4), (GICV_CTLR, 1), (GICV_IAR, 2),
                                         (GICV_PMR, 8), (0x1004, 4)])
def test_non_registers_are_recorded(offset, size):
    g, v = setup(ListReg(40, P, 0x40))
    vmcr = g.vmcr
    eq(v.read(offset, size), 0, f"read of {offset:#x} size {size}")
    v.write(offset, size, 0xFFFFFFFF)
    eq(v.unhandled, [(offset, False), (offset, True)], "recorded (offset, is_write)")
    eq((g.vmcr, state(g, 0)), (vmcr, P), "(VMCR, LR state) untouched")


def test_every_change_notifies_the_gich_listener():
    g, v = setup(ListReg(40, P, 0x40))
    calls = []
    g.on_change = lambda: calls.append(v.irq_line())
    v.read(GICV_IAR, 4)
    v.write(GICV_EOIR, 4, 40)
    v.write(GICV_PMR, 4, 0)
    eq(calls, [False, False, False], "irq_line seen by the listener after IAR, EOIR, PMR")


def test_lr_written_through_gich_is_seen():
    g, v = setup()
    g.write(GICH_LR0 + 8, ListReg(55, P, 0x30).encode())
    eq((v.irq_line(), v.read(GICV_IAR, 4)), (True, 55), "(irq_line, IAR) for an LR written by the hypervisor")
