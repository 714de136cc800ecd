"""The vGIC's interrupt state and its list registers: flush before entry, fold
after exit (KVM vgic.c / vgic-v2.c), with the guest acting through a real
GICV on a GichV2 loaded the way the world switch loads it (IHI 0048B 3.2, 5.3)."""
import pytest

from gic.lr import LR_STATE_ACTIVE, LR_STATE_PENDING, LR_STATE_PENDING_ACTIVE
from gic.v2_hyp import (HCR_EN, HCR_LRENPIE, HCR_NPIE, HCR_UIE, MISR_EOI, MISR_LRENP, MISR_NP, MISR_U,
                        VgicV2CpuIf)
from gic.vgic import Vgic
from tests.gic_util import Guest, enable, eq, lr_summary, lrs, new_vm

SPI, SPI2, PPI = 40, 41, 27
P, A, PA = LR_STATE_PENDING, LR_STATE_ACTIVE, LR_STATE_PENDING_ACTIVE


def snapshot(v: Vgic, vcpu: int, intids) -> dict:
    out = {}
    for i in intids:
        s = v.irq_state(i, vcpu)
        out[i] = (s.pending, s.active, s.pending_latch, s.line_level, s.source, s.active_source, s.vcpu)
    return out


def pulse(v: Vgic, intid: int, vcpu=None) -> None:
    v.set_level(intid, True, vcpu)
    v.set_level(intid, False, vcpu)


# --- flush / fold round trips -------------------------------------------------------------
def test_flush_then_fold_without_guest_action_keeps_the_state():
    v = new_vm(nr_vcpus=2, nr_lr=8)
    enable(v, SPI, edge=True, target=0b10, priority=0x40)
    enable(v, SPI2, target=0b10, priority=0x20)         # level
    enable(v, PPI, vcpu=1)
    pulse(v, SPI)
    v.set_level(SPI2, True)
    v.set_level(PPI, True, vcpu=1)
    v.send_sgi(0, 3, {1})
    v.dist_write(1, 0x300, 4, 1 << 5)                   # SGI 5 made active by the guest
    before = snapshot(v, 1, [SPI, SPI2, PPI, 3, 5])
    cpu_if = VgicV2CpuIf(8)
    v.flush_lr_state(1, cpu_if)
    eq(cpu_if.used_lrs, 5, "LRs used for 5 entries")
    eq(cpu_if.hcr & HCR_EN, HCR_EN, "flush enables the virtual interface (GICH_HCR.En)")
    v.fold_lr_state(1, cpu_if)
    eq(snapshot(v, 1, [SPI, SPI2, PPI, 3, 5]), before, "IRQ state after flush + fold with no guest action")
    eq(cpu_if.used_lrs, 0, "used_lrs after fold")
    eq(sorted(i.intid for i in v.ap_list[1]), [3, 5, PPI, SPI, SPI2], "vcpu1 ap_list after the round trip")


def test_guest_ack_and_eoi_takes_the_interrupt_off_the_list():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.enter()
    eq(lr_summary(g.cpu_if), [(SPI, P, 0)], "LRs after flush")
    eq(g.ack(), SPI, "GICV_IAR")
    g.eoi(SPI)
    eq(g.exit(), [], "maintenance conditions (an edge interrupt asks for none)")
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active, s.vcpu), (False, False, None), "SPI (pending, active, ap_list) after EOI + fold")
    eq(v.has_pending(0), False, "has_pending after the guest handled the only interrupt")
    g.enter()
    eq(g.cpu_if.used_lrs, 0, "LRs used on the next entry")


def test_lrs_are_filled_active_first_then_by_priority():
    v = new_vm()
    for intid, prio in ((40, 0x80), (41, 0x20), (42, 0x40), (43, 0xA0)):
        enable(v, intid, edge=True, priority=prio)
        pulse(v, intid)
    v.dist_write(0, 0x304, 4, 1 << (43 - 32))          # 43 (lowest priority) is active
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq([lr.vintid for lr in lrs(cpu_if)], [43, 41, 42, 40], "LR order")
    eq([lr.priority for lr in lrs(cpu_if)], [0xA0, 0x20, 0x40, 0x80], "LR priorities")
    eq(lrs(cpu_if)[0].state, PA, "43: active, and pending from its edge")


def test_only_the_best_entries_fit_and_the_rest_wait():
    v = new_vm(nr_lr=2)
    for intid, prio in ((40, 0x80), (41, 0x20), (42, 0x40)):
        enable(v, intid, edge=True, priority=prio)
        pulse(v, intid)
    g = Guest(v, nr_lr=2)
    g.enter()
    eq([lr.vintid for lr in lrs(g.cpu_if)], [41, 42], "the two best of three")
    eq(v.irq_state(40, 0).pending, True, "40 still pending outside the LRs")
    eq(g.handle_all(), [41, 42], "the guest takes the LR contents in priority order")
    g.exit()
    g.enter()
    eq(lr_summary(g.cpu_if), [(40, P, 0)], "the waiting interrupt on the next entry")


# --- underflow ---------------------------------------------------------------------------------
def test_more_pending_than_lrs_sets_uie_and_underflow_fires_when_one_lr_is_left():
    v = new_vm()
    for i in range(6):
        enable(v, 40 + i, edge=True, priority=0x10 * (i + 1))
        pulse(v, 40 + i)
    g = Guest(v)
    g.enter()
    eq(g.cpu_if.used_lrs, 4, "LRs used")
    eq(bool(g.cpu_if.hcr & HCR_UIE), True, "GICH_HCR.UIE with 6 entries for 4 LRs")
    eq(g.gich.misr & MISR_U, 0, "MISR.U with 4 valid LRs")
    for _ in range(2):
        g.eoi(g.ack())
    eq(g.gich.misr & MISR_U, 0, "MISR.U with 2 valid LRs")
    g.eoi(g.ack())
    eq(g.gich.misr & MISR_U, MISR_U, "MISR.U with 1 valid LR")
    eq(g.exit(), ["U"], "maintenance conditions at the exit")
    eq(g.cpu_if.hcr & HCR_UIE, 0, "fold clears UIE")
    g.enter()
    eq([lr.vintid for lr in lrs(g.cpu_if)], [43, 44, 45], "remaining interrupts on the next entry")
    eq(g.cpu_if.hcr & HCR_UIE, 0, "UIE with 3 entries for 4 LRs")


def test_exactly_as_many_entries_as_lrs_needs_no_underflow():
    v = new_vm()
    for i in range(4):
        enable(v, 40 + i, edge=True)
        pulse(v, 40 + i)
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq((cpu_if.used_lrs, cpu_if.hcr & HCR_UIE), (4, 0), "(used LRs, UIE) for 4 entries")


# --- state transitions (IHI 0048B 3.2.4) --------------------------------------------------------
def test_pending_active_and_pending_active_transitions():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.enter()
    eq(g.ack(), SPI, "IAR")
    g.exit()
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active), (False, True), "after the ack: (pending, active)")
    pulse(v, SPI)                                       # a new edge while active
    eq((s.pending, s.active), (True, True), "a new edge while active: (pending, active)")
    g.enter()
    eq(lr_summary(g.cpu_if), [(SPI, PA, 0)], "LR of a pending+active edge interrupt")
    eq(g.ack(), 1023, "a pending+active interrupt cannot be acknowledged before deactivation")
    g.eoi(SPI)
    eq(g.gich.lr[0] >> 28 & 3, P, "live LR state after EOI of a pending+active interrupt")
    g.exit()
    eq((s.pending, s.active), (True, False), "after the EOI: (pending, active)")
    g.enter()
    eq(g.handle_all(), [SPI], "the second edge is delivered")
    g.exit()
    eq((s.pending, s.active, s.vcpu), (False, False, None), "finally: (pending, active, ap_list)")


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_line_still_high_after_eoi(edge):
    """A level interrupt whose line stays high is pending again after EOI; an
    edge one is not (IHI 0048B 3.2.4)."""
    v = new_vm()
    enable(v, SPI, edge=edge)
    v.set_level(SPI, True)
    g = Guest(v)
    g.enter()
    eq(lrs(g.cpu_if)[0].eoi, not edge, "LR EOI bit (level, non-HW: maintenance to resample)")
    eq(g.handle_all(), [SPI], "interrupts taken")
    want = ["EOI"] if not edge else []
    eq(g.exit(), want, "maintenance conditions at the exit")
    eq(v.irq_state(SPI, 0).pending, not edge, "pending after EOI with the line still high")
    eq(v.has_pending(0), not edge, "has_pending after EOI with the line still high")
    g.enter()
    eq(lr_summary(g.cpu_if), [(SPI, P, 0)] if not edge else [], "LRs on the next entry")


def test_level_interrupt_whose_line_dropped_is_gone_after_eoi():
    v = new_vm()
    enable(v, SPI)
    v.set_level(SPI, True)
    g = Guest(v)
    g.enter()
    eq(g.ack(), SPI, "IAR")
    v.set_level(SPI, False)                             # the device deasserts (seen at the exit)
    g.eoi(SPI)
    g.exit()
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active, s.vcpu), (False, False, None), "(pending, active, ap_list)")


def test_level_interrupt_is_never_pending_active_in_an_lr():
    v = new_vm()
    enable(v, SPI)
    v.set_level(SPI, True)
    v.dist_write(0, 0x304, 4, 1 << (SPI - 32))          # active, and its line is high
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lr_summary(cpu_if), [(SPI, A, 0)], "LR of an active level interrupt with its line high")
    eq(lrs(cpu_if)[0].eoi, True, "EOI maintenance requested")


def test_edge_interrupt_latches_rising_edges_only():
    v = new_vm()
    enable(v, SPI, edge=True)
    v.set_level(SPI, True)
    v.set_level(SPI, True)                              # still high: no new edge
    g = Guest(v)
    g.enter()
    eq(g.handle_all(), [SPI], "one delivery for one rising edge")
    g.exit()
    eq(v.irq_state(SPI, 0).pending, False, "pending while the line is held high")


def test_software_pending_level_interrupt_is_consumed_by_the_ack():
    v = new_vm()
    enable(v, SPI)
    v.dist_write(0, 0x204, 4, 1 << (SPI - 32))          # ISPENDR, line low
    g = Guest(v)
    g.enter()
    eq(g.handle_all(), [SPI], "delivered from ISPENDR")
    g.exit()
    eq(v.irq_state(SPI, 0).pending, False, "pending after ack + EOI")


# --- SGIs ---------------------------------------------------------------------------------------
def test_two_sources_of_one_sgi_get_two_lrs_and_two_deliveries():
    v = new_vm(nr_vcpus=3)
    eq(v.send_sgi(0, 7, {2}), [2], "vCPUs to kick for a new SGI")
    eq(v.send_sgi(1, 7, {2}), [2], "vCPUs to kick for the second source")
    eq(v.send_sgi(1, 7, {2}), [], "vCPUs to kick when that source is already pending")
    eq(v.irq_state(7, 2).source, 0b011, "SGI 7 source bitmap at vcpu2")
    g = Guest(v, vcpu=2)
    g.enter()
    eq(lr_summary(g.cpu_if), [(7, P, 0), (7, P, 1)], "one LR per source")
    eq(v.irq_state(7, 2).source, 0, "sources moved into the LRs")
    first = g.ack()
    eq(first, 7 | 0 << 10, "first IAR: SGI 7 from CPU 0")
    eq(g.ack(), 1023, "the same priority cannot preempt the running one")
    g.eoi(first)
    second = g.ack()
    eq(second, 7 | 1 << 10, "second IAR: SGI 7 from CPU 1")
    g.eoi(second)
    g.exit()
    s = v.irq_state(7, 2)
    eq((s.source, s.active_source, s.vcpu), (0, 0, None), "SGI 7 (sources, active sources, ap_list)")


def test_sgi_source_survives_a_round_trip_through_the_lrs():
    v = new_vm(nr_vcpus=2)
    v.send_sgi(1, 2, {0})
    g = Guest(v)
    g.enter()
    eq(g.ack(), 2 | 1 << 10, "IAR")
    g.exit()                                            # exit while the handler runs
    s = v.irq_state(2, 0)
    eq((s.source, s.active_source), (0, 0b10), "(pending sources, active sources) after fold")
    v.send_sgi(1, 2, {0})                               # the same source again
    g.enter()
    eq(lr_summary(g.cpu_if), [(2, PA, 1)], "LR for a pending+active SGI from CPU 1")
    g.eoi(2 | 1 << 10)
    eq(g.handle_all(), [2 | 1 << 10], "the repeated SGI after the first EOI")
    g.exit()
    eq((s.source, s.active_source), (0, 0), "(pending sources, active sources) at the end")


# --- maintenance conditions ----------------------------------------------------------------------
def test_eoi_maintenance_for_a_level_interrupt():
    v = new_vm()
    enable(v, SPI)
    v.set_level(SPI, True)
    g = Guest(v)
    g.enter()
    g.eoi(g.ack())
    eq(g.gich.misr & MISR_EOI, MISR_EOI, "live MISR.EOI after the EOI")
    eq(g.gich.eisr, 0b1, "live EISR")
    eq(g.exit(), ["EOI"], "conditions in the saved MISR")
    eq(g.cpu_if.eisr, 0b1, "saved EISR")


def test_lrenp_maintenance_counts_eois_without_an_lr():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.cpu_if.hcr |= HCR_LRENPIE
    g.enter()
    eq(g.ack(), SPI, "IAR")
    g.eoi(SPI2)                                         # an INTID no LR holds
    eq(g.gich.hcr >> 27, 1, "GICH_HCR.EOICount")
    eq(g.gich.misr & MISR_LRENP, MISR_LRENP, "live MISR.LRENP")
    eq(g.exit(), ["LRENP"], "conditions in the saved MISR")
    eq(v.irq_state(SPI, 0).active, True, "the acknowledged interrupt stays active")


def test_np_maintenance_when_no_lr_is_pending():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.cpu_if.hcr |= HCR_NPIE
    g.enter()
    eq(g.gich.misr & MISR_NP, 0, "MISR.NP with a pending LR")
    g.ack()
    eq(g.gich.misr & MISR_NP, MISR_NP, "MISR.NP once the only pending LR is active")
    eq(g.exit(), ["NP"], "conditions in the saved MISR")


def test_handle_maintenance_reports_every_condition_of_the_saved_misr():
    v = new_vm()
    cpu_if = VgicV2CpuIf(4)
    cpu_if.misr = MISR_EOI | MISR_U | MISR_LRENP | MISR_NP
    eq(v.handle_maintenance(0, cpu_if), ["EOI", "U", "LRENP", "NP"], "conditions")


# --- hardware-mapped interrupts --------------------------------------------------------------------
def test_hw_interrupt_lr_and_deactivation():
    v = new_vm()
    folded = []
    v.on_hw_deactivate = lambda vcpu, pintid: folded.append((vcpu, pintid))
    v.map_hw(0, PPI, 27)
    enable(v, PPI)
    v.set_level(PPI, True, vcpu=0)
    g = Guest(v)
    g.enter()
    lr = lrs(g.cpu_if)[0]
    eq((lr.vintid, lr.state, lr.hw, lr.pintid, lr.eoi), (PPI, P, True, 27, False), "HW LR fields")
    eq(g.ack(), PPI, "IAR")
    g.eoi(PPI)
    eq(g.hw_deactivated, [27], "GICV's deactivation of the physical interrupt")
    eq(g.exit(), [], "no EOI maintenance for a HW interrupt")
    eq(folded, [(0, 27)], "Vgic.on_hw_deactivate at fold")
    v.set_level(PPI, False, vcpu=0)
    eq(v.irq_state(PPI, 0).vcpu, None, "ap_list once the line dropped")


def test_hw_interrupt_active_is_not_flushed_pending_active():
    v = new_vm()
    v.map_hw(0, PPI, 27)
    enable(v, PPI)
    v.set_level(PPI, True, vcpu=0)
    g = Guest(v)
    g.enter()
    g.ack()
    g.exit()
    g.enter()
    eq(lr_summary(g.cpu_if), [(PPI, A, 0)], "HW interrupt active with its line high: LR active only")


# --- has_pending (the WFI wake-up rule) ------------------------------------------------------------
def test_has_pending_needs_enable_and_the_distributor():
    v = new_vm(ctlr=0)
    v.set_level(SPI, True)
    eq(v.has_pending(0), False, "pending but disabled")
    enable(v, SPI)
    eq(v.has_pending(0), False, "pending and enabled, distributor disabled")
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(cpu_if.used_lrs, 0, "LRs while the distributor is disabled")
    v.dist_write(0, 0x000, 4, 1)
    eq(v.has_pending(0), True, "the latched state is forwarded once the distributor is enabled")
    v.dist_write(0, 0x300 + 4, 4, 1 << (SPI - 32))
    eq(v.has_pending(0), False, "pending+active: not signalled until deactivated")


def test_has_pending_follows_the_group_enable():
    v = new_vm(ctlr=0b01)
    enable(v, SPI)
    v.dist_write(0, 0x084, 4, 1 << (SPI - 32))          # group 1
    v.set_level(SPI, True)
    eq(v.has_pending(0), False, "group 1 interrupt with only EnableGrp0")
    v.dist_write(0, 0x000, 4, 0b10)
    eq(v.has_pending(0), True, "group 1 interrupt with EnableGrp1")
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lrs(cpu_if)[0].group1, True, "LR Grp1 bit")


def test_active_interrupts_are_flushed_even_with_the_distributor_disabled():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    v.dist_write(0, 0x300 + 4, 4, 1 << (SPI - 32))
    v.dist_write(0, 0x000, 4, 0)
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lr_summary(cpu_if), [(SPI, A, 0)], "only the active state, to be deactivated by the guest")


def test_spi_follows_its_target_between_vcpus():
    v = new_vm(nr_vcpus=2)
    enable(v, SPI, target=0b10)
    v.set_level(SPI, True)
    eq((v.has_pending(0), v.has_pending(1)), (False, True), "has_pending (vcpu0, vcpu1), target CPU 1")
    v.dist_write(0, 0x800 + SPI, 1, 0b01)
    eq((v.has_pending(0), v.has_pending(1)), (True, False), "has_pending (vcpu0, vcpu1), target CPU 0")
    v.dist_write(0, 0x800 + SPI, 1, 0b11)
    eq(v.irq_state(SPI, 0).vcpu, 0, "1-of-N: the lowest-numbered target")
    v.dist_write(0, 0x800 + SPI, 1, 0)
    eq((v.has_pending(0), v.has_pending(1)), (False, False), "has_pending with no target")


def test_ppis_are_banked():
    v = new_vm(nr_vcpus=2)
    enable(v, PPI, vcpu=0)
    enable(v, PPI, vcpu=1)
    v.set_level(PPI, True, vcpu=1)
    eq((v.has_pending(0), v.has_pending(1)), (False, True), "has_pending (vcpu0, vcpu1)")


# --- API misuse ----------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda v: v.set_level(5, True, 0), "SGI"),
    (lambda v: v.set_level(PPI, True), "banked"),
    (lambda v: v.set_level(96, True), "not implemented"),
    (lambda v: v.set_level(PPI, True, 2), "no vCPU"),
    (lambda v: v.map_hw(0, 3, 3), "SGI"),
    (lambda v: v.send_sgi(0, 16, {0}), "SGI number"),
    (lambda v: v.send_sgi(0, 1, {5}), "no vCPU"),
])
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call(Vgic(nr_vcpus=2, nr_spis=64))


@pytest.mark.parametrize("kw,match", [
    (dict(nr_vcpus=0), "1 to 8"), (dict(nr_vcpus=9), "1 to 8"),
    (dict(nr_vcpus=1, nr_spis=33), "multiple of 32"),
])
def test_bad_configuration_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Vgic(**kw)


def test_flush_twice_without_fold_is_refused():
    v = new_vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    cpu_if = VgicV2CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    with pytest.raises(RuntimeError, match="not folded"):
        v.flush_lr_state(0, cpu_if)
