"""GICv3 interrupt virtualization (IHI 0069): the ICH_LR encoding and the live ICH
registers (gic/v3_hyp.py), the ICV_* virtual CPU interface (gic/v3_vcpuif.py),
and the vGIC in GICv3 mode (gic/vgic.py + gic/vgic_v3.py): flush/fold in ICH_LR
format with a guest driving ICV_IAR1/EOIR1, SGIs from ICC_SGI1R_EL1, the
distributor with affinity routing and the redistributors."""
import pytest

from gic.lr import LR_STATE_ACTIVE, LR_STATE_INVALID, LR_STATE_PENDING, LR_STATE_PENDING_ACTIVE
from gic.v2_hyp import VgicV2CpuIf
from gic.v3_hyp import (HCR_EN, HCR_LRENPIE, HCR_NPIE, HCR_UIE, HCR_VGRP0DIE, HCR_VGRP1EIE, LR_EOI, MISR_EOI,
                        MISR_LRENP, MISR_NP, MISR_U, MISR_VGRP0D, MISR_VGRP1E, VMCR_VCBPR, VMCR_VENG0, VMCR_VENG1,
                        VMCR_VEOIM, VMCR_VFIQEN, IchLr, IchV3, VgicV3CpuIf, ich_lr, lr_empty, lr_eoi,
                        lr_eoi_maintenance, lr_pintid, lr_state)
from gic.v3_vcpuif import (ICC_AP0R_EL1, ICC_AP1R_EL1, ICC_BPR0_EL1, ICC_BPR1_EL1, ICC_CTLR_EL1, ICC_DIR_EL1,
                           ICC_EOIR0_EL1, ICC_EOIR1_EL1, ICC_HPPIR0_EL1, ICC_HPPIR1_EL1, ICC_IAR0_EL1, ICC_IAR1_EL1,
                           ICC_IGRPEN0_EL1, ICC_IGRPEN1_EL1, ICC_PMR_EL1, ICC_RPR_EL1, ICC_SGI1R_EL1, ICC_SRE_EL1,
                           VirtualCpuInterfaceV3)
from gic.vgic import Vgic
from tests.gic_util import eq

P, A, PA, INV = LR_STATE_PENDING, LR_STATE_ACTIVE, LR_STATE_PENDING_ACTIVE, LR_STATE_INVALID
SPI, SPI2, PPI = 40, 41, 27
RD, SGI = 0x0000, 0x10000                 # RD_base and SGI_base inside one redistributor region
GICD_CTLR, GICD_TYPER, GICD_IIDR, GICD_TYPER2, GICD_PIDR2 = 0x0, 0x4, 0x8, 0xC, 0xFFE8
IGROUPR, ISENABLER, ICENABLER, ISPENDR, ICPENDR = 0x080, 0x100, 0x180, 0x200, 0x280
ISACTIVER, ICACTIVER, IPRIORITYR, ICFGR, IGRPMODR = 0x300, 0x380, 0x400, 0xC00, 0xD00
IROUTER = 0x6000
GICR_CTLR, GICR_IIDR, GICR_TYPER, GICR_WAKER, GICR_PIDR2 = 0x0, 0x4, 0x8, 0x14, 0xFFE8


# --- helpers ------------------------------------------------------------------------------------
def vm(nr_vcpus=1, nr_lr=4, mpidrs=None, ctlr=0b11) -> Vgic:
    """A GICv3 VM whose guest enabled both groups (GICD_CTLR, DS = 1 view)."""
    v = Vgic(nr_vcpus=nr_vcpus, nr_lr=nr_lr, version=3, mpidrs=mpidrs)
    v.dist_write(0, GICD_CTLR, 4, ctlr)
    return v


def enable(v: Vgic, intid: int, vcpu: int = 0, priority=None, edge=None, route=None, group=None) -> None:
    """Program one interrupt as a GICv3 guest driver does: private interrupts in
    the redistributor of `vcpu`, SPIs in the distributor."""
    def w(off, size, val):
        if intid < 32:
            v.redist_write(vcpu, SGI + off, size, val)
        else:
            v.dist_write(0, off, size, val)

    def r(off):
        return v.redist_read(vcpu, SGI + off, 4) if intid < 32 else v.dist_read(0, off, 4)
    if priority is not None:
        w(IPRIORITYR + intid, 1, priority)
    if edge is not None:
        reg, shift = ICFGR + intid // 16 * 4, intid % 16 * 2
        w(reg, 4, (r(reg) & ~(3 << shift)) | ((2 if edge else 0) << shift))
    if group is not None:
        reg = IGROUPR + intid // 32 * 4
        w(reg, 4, (r(reg) & ~(1 << intid % 32)) | group << intid % 32)
    if route is not None:
        v.dist_write(0, IROUTER + 8 * intid, 8, route)
    w(ISENABLER + intid // 32 * 4, 4, 1 << intid % 32)


def pulse(v: Vgic, intid: int, vcpu=None) -> None:
    v.set_level(intid, True, vcpu)
    v.set_level(intid, False, vcpu)


def enter_guest(ich: IchV3, cpu_if: VgicV3CpuIf) -> None:
    """The world switch's restore (KVM __vgic_v3_restore_state), through MSRs."""
    ich.write("HCR", cpu_if.hcr, notify=False)
    ich.write("VMCR", cpu_if.vmcr, notify=False)
    for n in range(4):
        ich.write(f"AP0R{n}", cpu_if.ap0r[n], notify=False)
        ich.write(f"AP1R{n}", cpu_if.ap1r[n], notify=False)
    for i in range(ich.nr_lr):
        ich.write(f"LR{i}", cpu_if.lr[i] if i < cpu_if.used_lrs else 0, notify=False)
    ich.notify()


def exit_guest(ich: IchV3, cpu_if: VgicV3CpuIf) -> None:
    """The world switch's save (KVM __vgic_v3_save_state), then ICH_HCR_EL2 = 0."""
    for name in ("VMCR", "MISR", "EISR", "ELRSR"):
        setattr(cpu_if, name.lower(), ich.read(name))
    cpu_if.ap0r[:] = [ich.read(f"AP0R{n}") for n in range(4)]
    cpu_if.ap1r[:] = [ich.read(f"AP1R{n}") for n in range(4)]
    cpu_if.lr[:] = [ich.read(f"LR{i}") for i in range(ich.nr_lr)]
    ich.write("HCR", 0)


class Guest:
    """One vCPU on one physical CPU: its saved ICH copy, the live ICH registers
    and the ICV_* registers the guest reaches without traps."""

    def __init__(self, vgic: Vgic, vcpu: int = 0, nr_lr: int = 4, vmcr: int = VMCR_VENG1 | 0xF8 << 24):
        self.vgic, self.vcpu = vgic, vcpu
        self.cpu_if = VgicV3CpuIf(nr_lr)
        self.ich = IchV3(nr_lr)
        self.icv = VirtualCpuInterfaceV3(self.ich)
        self.hw_deactivated: list[int] = []
        self.icv.on_hw_deactivate = self.hw_deactivated.append
        self.cpu_if.vmcr = vmcr                 # the guest enabled group 1, PMR 0xF8

    def enter(self) -> None:
        self.vgic.flush_lr_state(self.vcpu, self.cpu_if)
        enter_guest(self.ich, self.cpu_if)

    def exit(self) -> list[str]:
        exit_guest(self.ich, self.cpu_if)
        conditions = self.vgic.handle_maintenance(self.vcpu, self.cpu_if)
        self.vgic.fold_lr_state(self.vcpu, self.cpu_if)
        return conditions

    def ack(self) -> int:
        return self.icv.read(ICC_IAR1_EL1)

    def eoi(self, value: int) -> None:
        self.icv.write(ICC_EOIR1_EL1, value)

    def handle_all(self) -> list[int]:
        seen = []
        while (iar := self.ack()) != 1023:
            seen.append(iar)
            self.eoi(iar)
        return seen


def lrs(cpu_if: VgicV3CpuIf) -> list[IchLr]:
    return [IchLr.decode(v) for v in cpu_if.lr[:cpu_if.used_lrs]]


def lr_summary(cpu_if: VgicV3CpuIf) -> list[tuple[int, int]]:
    """(vINTID, state) of each used LR."""
    return [(lr.vintid, lr.state) for lr in lrs(cpu_if)]


def icv_on(*lr_values: int, vmcr: int = VMCR_VENG0 | VMCR_VENG1 | 0xF8 << 24, hcr: int = HCR_EN):
    """A live ICH with these LRs and a virtual CPU interface on it."""
    ich = IchV3(4)
    for i, v in enumerate(lr_values):
        ich.write(f"LR{i}", v)
    ich.write("VMCR", vmcr)
    ich.write("HCR", hcr)
    icv = VirtualCpuInterfaceV3(ich)
    deactivated: list[int] = []
    icv.on_hw_deactivate = deactivated.append
    return ich, icv, deactivated


def states(ich: IchV3) -> list[int]:
    return [lr_state(v) for v in ich.lr]


# === ICH_LR<n>_EL2 encoding ======================================================================
@pytest.mark.parametrize("lr", [
    IchLr(vintid=27, state=P, priority=0xA0, group1=True, hw=True, pintid=27),
    IchLr(vintid=5, state=A, priority=0x08, eoi=True),
    IchLr(vintid=0xFFFF_FFFF, state=PA, priority=0xFF, group1=True, eoi=True),
    IchLr(vintid=1019, state=P, hw=True, pintid=0x1FFF),
    IchLr(vintid=1023, state=INV),
])
def test_ich_lr_round_trip(lr):
    eq(IchLr.decode(lr.encode()), lr, f"decode(encode({lr}))")


def test_ich_lr_field_positions():
    v = ich_lr(27, P, 0xA8, group1=True, hw=True, pintid=30)
    eq(v, 1 << 62 | 1 << 61 | 1 << 60 | 0xA8 << 48 | 30 << 32 | 27, "HW group-1 pending LR")
    eq(ich_lr(33, PA, 0x10, eoi=True), 3 << 62 | 0x10 << 48 | 1 << 41 | 33, "pending+active with EOI")
    eq(ich_lr(33, A), 2 << 62 | 33, "active: State = 0b10")


def test_ich_lr_eoi_bit_is_pintid9_only_without_hw():
    """IHI 0069 ICH_LR<n>_EL2: bit 41 is EOI when HW = 0, pINTID[9] when HW = 1."""
    hw = ich_lr(40, INV, hw=True, pintid=1 << 9)
    eq((lr_eoi(hw), lr_pintid(hw), hw & LR_EOI != 0), (False, 512, True), "HW=1: (EOI, pINTID, bit 41)")
    sw = ich_lr(40, INV, eoi=True)
    eq((lr_eoi(sw), lr_eoi_maintenance(sw), lr_empty(sw)), (True, True, False), "HW=0: (EOI, EISR, ELRSR)")
    eq((lr_eoi_maintenance(hw), lr_empty(hw)), (False, True), "HW=1 invalid LR: (EISR, ELRSR)")


# === IchV3: the live registers ==================================================================
def test_vtr_reports_list_registers_and_priority_bits():
    vtr = IchV3(nr_lr=4).read("VTR")
    fields = (vtr & 0x1F, vtr >> 29 & 7, vtr >> 26 & 7, vtr >> 23 & 7, vtr >> 22 & 1, vtr >> 21 & 1, vtr >> 19 & 1)
    eq(fields, (3, 4, 4, 0, 0, 1, 0), "VTR (ListRegs, PRIbits, PREbits, IDbits, SEIS, A3V, TDS)")
    eq(IchV3(nr_lr=16).read("VTR") & 0x1F, 15, "ListRegs with 16 LRs")


def test_derived_registers_follow_the_lrs():
    ich = IchV3(4)
    eq((ich.read("ELRSR"), ich.read("EISR"), ich.read("MISR")), (0xF, 0, 0), "(ELRSR, EISR, MISR) at reset")
    ich.write("LR0", ich_lr(33, P, 0x80, group1=True))
    ich.write("LR1", ich_lr(34, INV, eoi=True))
    ich.write("LR2", ich_lr(35, INV, hw=True, pintid=35))
    eq(ich.read("ELRSR"), 0b1100, "ELRSR: LR2 (HW, invalid) and LR3 are usable")
    eq(ich.read("EISR"), 0b0010, "EISR: LR1 asks for EOI maintenance")
    eq(ich.read("MISR"), MISR_EOI, "MISR with no HCR enables: EOI only")
    ich.write("HCR", HCR_UIE | HCR_NPIE)
    eq(ich.read("MISR"), MISR_EOI | MISR_U, "MISR: one valid LR with UIE; a pending LR blocks NP")
    ich.write("LR0", ich_lr(33, A, 0x80, group1=True))
    eq(ich.read("MISR") & MISR_NP, MISR_NP, "MISR.NP once no LR is pending")


def test_misr_vgrp_conditions_follow_vmcr_enables():
    ich = IchV3(4)
    ich.write("HCR", HCR_VGRP0DIE | HCR_VGRP1EIE)
    ich.write("VMCR", VMCR_VENG1)
    eq(ich.read("MISR"), MISR_VGRP0D | MISR_VGRP1E, "MISR: group 0 disabled, group 1 enabled")
    ich.write("VMCR", VMCR_VENG0)
    eq(ich.read("MISR"), 0, "MISR with group 0 enabled and group 1 disabled")


def test_writes_keep_res0_fields_and_read_only_registers():
    ich = IchV3(4)
    ich.write("LR0", ich_lr(33, P, 0xFF) | 1 << 59 | 7 << 45)
    eq(ich.read("LR0"), ich_lr(33, P, 0xF8), "LR0: low priority bits, NMI and [47:45] are RES0")
    ich.write("VMCR", 0xFF << 24 | VMCR_VEOIM | 1 << 2)
    vmcr = ich.read("VMCR")
    eq((vmcr >> 24, vmcr >> 21 & 7, vmcr >> 18 & 7, bool(vmcr & VMCR_VFIQEN), bool(vmcr & 1 << 2)),
       (0xF8, 2, 3, True, False), "VMCR (VPMR, VBPR0 min, VBPR1 min, VFIQEn RES1, VAckCtl RES0)")
    ich.write("HCR", 0xFFFF_FFFF)
    eq(ich.read("HCR"), 0xF800_1CFF, "HCR: TSEI, TDIR (not supported) and RES0 bits stay 0")
    vtr = ich.read("VTR")
    for name in ("VTR", "MISR", "EISR", "ELRSR"):
        ich.write(name, 0x1234)
    eq((ich.read("VTR"), ich.read("ELRSR")), (vtr, 0xE), "(VTR, ELRSR) after writes (read-only)")
    eq((ich.read("LR15"), ich.read("AP1R3")), (0, 0), "(LR15 beyond ListRegs, AP1R3)")
    with pytest.raises(ValueError, match="no ICH register"):
        ich.read("LR16")


def test_on_change_follows_writes_unless_batched():
    ich = IchV3(2)
    calls = []
    ich.on_change = lambda: calls.append(1)
    ich.write("LR0", ich_lr(33, P))
    ich.write("LR1", ich_lr(34, P), notify=False)
    eq(len(calls), 1, "notifications after one notifying and one batched write")
    ich.notify()
    eq(len(calls), 2, "notifications after notify()")


def test_load_store_and_snapshot():
    cpu_if = VgicV3CpuIf(4)
    cpu_if.hcr, cpu_if.vmcr, cpu_if.used_lrs = HCR_EN, VMCR_VENG1 | 0xF0 << 24, 2
    cpu_if.ap1r[0] = 1 << 4
    cpu_if.lr[:] = [ich_lr(33, A, 0x20, group1=True), ich_lr(34, P, 0x40, group1=True), ich_lr(99, P), 0]
    ich = IchV3(4)
    ich.load(cpu_if)
    eq(ich.lr[2], 0, "an LR beyond used_lrs is loaded as 0")
    eq((ich.hcr, ich.ap1r[0]), (HCR_EN, 1 << 4), "(HCR, AP1R0) after load")
    vmcr, misr, eisr, elrsr, ap0r, ap1r, lr = ich.snapshot()
    eq((vmcr, misr, eisr, elrsr, ap1r[0], lr[:2]),
       (ich.read("VMCR"), ich.read("MISR"), ich.read("EISR"), ich.read("ELRSR"), 1 << 4, cpu_if.lr[:2]),
       "snapshot equals the individual reads")
    out = VgicV3CpuIf(4)
    ich.store(out)
    eq((out.vmcr, out.elrsr, out.ap1r, out.lr), (vmcr, 0b1100, [1 << 4, 0, 0, 0], lr), "stored copy")


def test_lr_count_bounds():
    for n in (0, 17):
        with pytest.raises(ValueError, match="1 to 16"):
            IchV3(nr_lr=n)


# === ICV_*: the virtual CPU interface ============================================================
def test_spurious_when_nothing_is_pending():
    ich, icv, _ = icv_on(ich_lr(40, A, 0x10, group1=True))
    eq((icv.read(ICC_HPPIR1_EL1), icv.irq_line(), icv.read(ICC_IAR1_EL1)), (1023, False, 1023),
       "(HPPIR1, irq_line, IAR1) with only an active LR")


@pytest.mark.parametrize("hcr,vmcr", [(0, VMCR_VENG1 | 0xF8 << 24), (HCR_EN, 0xF8 << 24)],
                         ids=["ICH_HCR.En=0", "VENG1=0"])
def test_spurious_when_the_interface_or_group_is_disabled(hcr, vmcr):
    ich, icv, _ = icv_on(ich_lr(40, P, 0x10, group1=True), vmcr=vmcr, hcr=hcr)
    eq((icv.read(ICC_HPPIR1_EL1), icv.irq_line(), icv.read(ICC_IAR1_EL1)), (1023, False, 1023),
       "(HPPIR1, irq_line, IAR1)")
    eq(states(ich)[0], P, "LR state unchanged")


def test_iar1_activates_the_highest_priority_pending_lr():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x80, True), ich_lr(41, P, 0x20, True), ich_lr(42, P, 0x40, True))
    eq(icv.read(ICC_HPPIR1_EL1), 41, "HPPIR1")
    eq(states(ich)[1], P, "HPPIR1 does not acknowledge")
    eq(icv.read(ICC_IAR1_EL1), 41, "IAR1")
    eq(states(ich)[:3], [P, A, P], "LR states after IAR1")
    eq((ich.ap1r[0], ich.ap0r[0]), (1 << (0x20 >> 3), 0), "(AP1R0, AP0R0): the group priority of 0x20")
    eq(icv.read(ICC_RPR_EL1), 0x20, "RPR")


def test_equal_priorities_lowest_lr_first():
    ich, icv, _ = icv_on(ich_lr(50, P, 0x40, True), ich_lr(45, P, 0x40, True))
    eq(icv.read(ICC_IAR1_EL1), 50, "IAR1 among equal priorities: the lowest-numbered LR")


@pytest.mark.parametrize("pmr,signalled", [(0x80, False), (0x88, True), (0x00, False), (0xF8, True)])
def test_priority_mask(pmr, signalled):
    ich, icv, _ = icv_on(ich_lr(40, P, 0x80, True))
    icv.write(ICC_PMR_EL1, pmr)
    eq(icv.irq_line(), signalled, f"irq_line with priority 0x80, PMR {pmr:#x}")
    eq(icv.read(ICC_IAR1_EL1), 40 if signalled else 1023, f"IAR1 with PMR {pmr:#x}")


def test_pmr_keeps_the_implemented_bits():
    ich, icv, _ = icv_on()
    icv.write(ICC_PMR_EL1, 0xFF)
    eq((icv.read(ICC_PMR_EL1), ich.vmcr >> 24), (0xF8, 0xF8), "(ICV_PMR, VMCR.VPMR) after writing 0xFF")


def test_running_priority_blocks_equal_and_lower_priorities():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x80, True), ich_lr(41, P, 0x80, True), ich_lr(42, P, 0x40, True))
    eq(icv.read(ICC_IAR1_EL1), 42, "first IAR1")
    eq((icv.irq_line(), icv.read(ICC_IAR1_EL1)), (False, 1023), "(irq_line, IAR1) while 0x40 runs")
    eq(icv.read(ICC_HPPIR1_EL1), 40, "HPPIR1 ignores the running priority")
    icv.write(ICC_EOIR1_EL1, 42)
    eq(icv.read(ICC_RPR_EL1), 0xFF, "RPR after the EOI: idle")
    eq(icv.read(ICC_IAR1_EL1), 40, "IAR1 after the EOI")


def test_preemption_uses_the_group_priority_only():
    """VBPR1 = 4: group priority [7:4]; 0x28 cannot preempt 0x20 (same group priority)
    but 0x08 can (the VGroupBits pseudocode)."""
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, True), ich_lr(41, P, 0x28, True))
    icv.write(ICC_BPR1_EL1, 4)
    eq(icv.read(ICC_IAR1_EL1), 40, "IAR1")
    eq(icv.read(ICC_IAR1_EL1), 1023, "0x28 within the running group priority 0x20")
    ich.lr[2] = ich_lr(42, P, 0x08, True)
    eq(icv.read(ICC_IAR1_EL1), 42, "0x08 preempts")
    eq(ich.ap1r[0], 1 << (0x20 >> 3) | 1 << 0, "AP1R0: two active group priorities")
    icv.write(ICC_EOIR1_EL1, 42)
    icv.write(ICC_EOIR1_EL1, 40)
    eq((states(ich)[:3], ich.ap1r[0]), ([INV, P, INV], 0), "(LR states, AP1R0) after both EOIs")


def test_preemption_compares_under_the_pending_groups_binary_point():
    """Group 0 runs at 0x28 (VBPR0 = 2, [7:3]); a group 1 interrupt at 0x20 with
    VBPR1 = 4 has group priority 0x20, the running one seen through [7:4] is 0x20
    too: no preemption (QEMU icv_hppi_can_preempt)."""
    ich, icv, _ = icv_on(ich_lr(41, P, 0x20, group1=True))
    icv.write(ICC_BPR1_EL1, 4)
    ich.ap0r[0] = 1 << (0x28 >> 3)
    eq((icv.read(ICC_RPR_EL1), icv.irq_line(), icv.read(ICC_IAR1_EL1)), (0x28, False, 1023),
       "(RPR, vIRQ, IAR1)")
    icv.write(ICC_BPR1_EL1, 3)
    eq((icv.irq_line(), icv.read(ICC_IAR1_EL1)), (True, 41), "(vIRQ, IAR1) with VBPR1 = 3: [7:3]")


def test_group_filtering_iar1_vs_iar0():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, group1=False), ich_lr(41, P, 0x40, group1=True))
    eq(icv.read(ICC_HPPIR1_EL1), 1023, "HPPIR1 when the highest is a group 0 interrupt")
    eq(icv.read(ICC_IAR1_EL1), 1023, "IAR1 does not acknowledge group 0")
    eq((icv.fiq_line(), icv.irq_line()), (True, False), "(vFIQ, vIRQ): group 0 is a virtual FIQ")
    eq(icv.read(ICC_HPPIR0_EL1), 40, "HPPIR0")
    eq(icv.read(ICC_IAR0_EL1), 40, "IAR0")
    eq(ich.ap0r[0], 1 << 4, "AP0R0 after IAR0")
    eq((icv.read(ICC_IAR1_EL1), icv.read(ICC_IAR0_EL1)), (1023, 1023), "0x40 cannot preempt 0x20")
    icv.write(ICC_EOIR0_EL1, 40)
    eq((icv.irq_line(), icv.read(ICC_IAR1_EL1)), (True, 41), "(vIRQ, IAR1) after EOIR0")


def test_iar_with_a_disabled_group_looks_past_it():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, group1=False), ich_lr(41, P, 0x40, group1=True),
                         vmcr=VMCR_VENG1 | 0xF8 << 24)
    eq(icv.read(ICC_IAR1_EL1), 41, "IAR1 with group 0 disabled (VENG0 = 0)")


def test_eoi_drops_priority_and_deactivates():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, True))
    eq(icv.read(ICC_IAR1_EL1), 40, "IAR1")
    icv.write(ICC_EOIR1_EL1, 40)
    eq((states(ich)[0], ich.ap1r[0], ich.hcr >> 27), (INV, 0, 0), "(LR state, AP1R0, EOIcount) after EOIR1")


def test_priority_drop_favours_group0_on_a_tie():
    """Both groups active at one priority (UNPREDICTABLE): group 0's bit goes first
    (QEMU icv_drop_prio)."""
    ich, icv, _ = icv_on(ich_lr(40, A, 0x20, group1=True))
    ich.ap0r[0] = ich.ap1r[0] = 1 << 4
    icv.write(ICC_EOIR1_EL1, 40)
    eq((ich.ap0r[0], ich.ap1r[0], states(ich)[0]), (0, 1 << 4, INV), "(AP0R0, AP1R0, LR state)")


def test_eoi_of_a_pending_active_lr_leaves_it_pending():
    ich, icv, _ = icv_on(ich_lr(40, PA, 0x20, True))
    ich.ap1r[0] = 1 << 4
    icv.write(ICC_EOIR1_EL1, 40)
    eq(states(ich)[0], P, "P+A -> P")
    eq(icv.read(ICC_IAR1_EL1), 40, "acknowledged again")


def test_veoim_splits_priority_drop_and_deactivation():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, True))
    icv.write(ICC_CTLR_EL1, 1 << 1)                    # EOImode
    eq(bool(ich.vmcr & VMCR_VEOIM), True, "VMCR.VEOIM after ICV_CTLR.EOImode = 1")
    icv.read(ICC_IAR1_EL1)
    icv.write(ICC_EOIR1_EL1, 40)
    eq((states(ich)[0], ich.ap1r[0], icv.read(ICC_RPR_EL1)), (A, 0, 0xFF), "(LR, AP1R0, RPR) after EOIR1")
    icv.write(ICC_DIR_EL1, 40)
    eq(states(ich)[0], INV, "LR after DIR")
    eq(ich.hcr >> 27, 0, "EOIcount")


def test_dir_without_veoim_is_ignored():
    ich, icv, _ = icv_on(ich_lr(40, A, 0x20, True))
    icv.write(ICC_DIR_EL1, 40)
    icv.write(ICC_DIR_EL1, 41)
    eq((states(ich)[0], ich.hcr >> 27), (A, 0), "(LR state, EOIcount) after DIR with VEOIM = 0")


def test_eoi_of_the_other_group_or_priority_only_drops_the_priority():
    ich, icv, _ = icv_on(ich_lr(40, A, 0x20, group1=True))
    ich.ap1r[0] = 1 << 4
    icv.write(ICC_EOIR0_EL1, 40)                       # group 0 EOI of a group 1 interrupt
    eq((states(ich)[0], ich.ap1r[0]), (A, 0), "(LR state, AP1R0): priority dropped, not deactivated")
    ich.ap1r[0] = 1 << 2                               # the active priority is 0x10, the LR says 0x20
    icv.write(ICC_EOIR1_EL1, 40)
    eq((states(ich)[0], ich.ap1r[0]), (A, 0), "(LR state, AP1R0) after an EOI of another priority")


def test_eoi_without_an_active_priority_does_nothing():
    ich, icv, _ = icv_on(ich_lr(40, A, 0x20, True))
    icv.write(ICC_EOIR1_EL1, 40)
    icv.write(ICC_EOIR1_EL1, 41)
    eq((states(ich)[0], ich.hcr >> 27), (A, 0), "(LR state, EOIcount): no APR bit to clear")


def test_special_intids_are_ignored_by_eoi():
    ich, icv, _ = icv_on()
    ich.ap1r[0] = 1 << 4
    icv.write(ICC_EOIR1_EL1, 1023)
    eq(ich.ap1r[0], 1 << 4, "AP1R0 after EOIR1 of 1023")


@pytest.mark.parametrize("veoim,reg,counted", [
    (False, ICC_EOIR1_EL1, True),      # EOImode 0: the EOI would have deactivated
    (True, ICC_EOIR1_EL1, False),      # EOImode 1: an EOI only drops the priority
    (True, ICC_DIR_EL1, True),         # EOImode 1: DIR deactivates
], ids=["EOIR-VEOIM0", "EOIR-VEOIM1", "DIR-VEOIM1"])
def test_unmatched_deactivation_counts_eoicount(veoim, reg, counted):
    """ICH_HCR_EL2.EOIcount: a write that would have deactivated, with no LR for it."""
    ich, icv, _ = icv_on(ich_lr(40, A, 0x20, True), hcr=HCR_EN | HCR_LRENPIE)
    if veoim:
        icv.write(ICC_CTLR_EL1, 1 << 1)
    ich.ap1r[0] = 1 << 4
    icv.write(reg, 77)                                  # no LR holds INTID 77
    eq(ich.hcr >> 27, int(counted), "EOIcount")
    eq(ich.misr & MISR_LRENP, MISR_LRENP if counted else 0, "MISR.LRENP")
    eq(states(ich)[0], A, "the active LR is untouched")


def test_hw_lr_deactivates_the_physical_interrupt():
    ich, icv, deactivated = icv_on(ich_lr(27, P, 0x20, True, hw=True, pintid=27))
    icv.write(ICC_EOIR1_EL1, icv.read(ICC_IAR1_EL1))
    eq((deactivated, states(ich)[0], ich.eisr), ([27], INV, 0), "(pINTIDs deactivated, LR state, EISR)")


def test_eoi_maintenance_for_a_non_hw_lr_with_eoi():
    ich, icv, deactivated = icv_on(ich_lr(40, P, 0x20, True, eoi=True))
    icv.write(ICC_EOIR1_EL1, icv.read(ICC_IAR1_EL1))
    eq((deactivated, ich.eisr, ich.misr & MISR_EOI, ich.maintenance_line()), ([], 1, MISR_EOI, True),
       "(HW deactivations, EISR, MISR.EOI, maintenance line)")


def test_bpr_minimums_and_vcbpr():
    ich, icv, _ = icv_on()
    icv.write(ICC_BPR0_EL1, 0)
    icv.write(ICC_BPR1_EL1, 0)
    eq((icv.read(ICC_BPR0_EL1), icv.read(ICC_BPR1_EL1)), (2, 3), "(BPR0, BPR1) written 0: their minimums")
    icv.write(ICC_BPR0_EL1, 5)
    icv.write(ICC_BPR1_EL1, 6)
    eq((ich.vmcr >> 21 & 7, ich.vmcr >> 18 & 7), (5, 6), "(VMCR.VBPR0, VMCR.VBPR1)")
    icv.write(ICC_CTLR_EL1, 1)                          # CBPR
    eq((bool(ich.vmcr & VMCR_VCBPR), icv.read(ICC_BPR1_EL1)), (True, 6), "(VCBPR, BPR1 = BPR0 + 1)")
    icv.write(ICC_BPR1_EL1, 7)
    eq(ich.vmcr >> 18 & 7, 6, "BPR1 writes are ignored while CBPR is set")
    icv.write(ICC_BPR0_EL1, 7)
    eq(icv.read(ICC_BPR1_EL1), 7, "BPR1 with CBPR: BPR0 + 1 saturates at 7")


def test_ctlr_sre_igrpen_and_aprs():
    ich, icv, _ = icv_on(vmcr=0)
    ctlr = icv.read(ICC_CTLR_EL1)
    eq((ctlr >> 8 & 7, ctlr >> 11 & 7, ctlr >> 15 & 1, ctlr & 3), (4, 0, 1, 0),
       "ICV_CTLR (PRIbits, IDbits, A3V, EOImode|CBPR)")
    icv.write(ICC_CTLR_EL1, 0xFFFF_FFFF)
    eq(icv.read(ICC_CTLR_EL1) & 3, 3, "ICV_CTLR: CBPR and EOImode are writable")
    eq(icv.read(ICC_CTLR_EL1) >> 8, ctlr >> 8, "ICV_CTLR: the rest is read-only")
    icv.write(ICC_SRE_EL1, 0)
    eq(icv.read(ICC_SRE_EL1), 0x7, "ICC_SRE_EL1: SRE | DFB | DIB, writes ignored")
    icv.write(ICC_IGRPEN1_EL1, 1)
    eq((icv.read(ICC_IGRPEN0_EL1), icv.read(ICC_IGRPEN1_EL1), ich.vmcr & 3), (0, 1, VMCR_VENG1),
       "(IGRPEN0, IGRPEN1, VMCR.VENG*)")
    icv.write(ICC_IGRPEN0_EL1, 1)
    eq(ich.vmcr & 3, VMCR_VENG0 | VMCR_VENG1, "VMCR after IGRPEN0 = 1")
    icv.write(ICC_AP1R_EL1[0], 1 << 6)
    icv.write(ICC_AP0R_EL1[2], 0x1234)
    eq((ich.ap1r[0], ich.ap0r[2], icv.read(ICC_AP1R_EL1[0])), (1 << 6, 0x1234, 1 << 6), "APRs")
    eq(icv.read(ICC_RPR_EL1), 0x30, "RPR from AP1R0 bit 6")


def test_unimplemented_and_undefined_accesses_are_recorded():
    ich, icv, _ = icv_on()
    eq(ICC_SGI1R_EL1 in icv.keys(), False, "ICC_SGI1R_EL1 is trapped to EL2, not an ICV register")
    eq(len(icv.keys()), 23, "number of implemented ICC encodings")
    icv.write(ICC_SGI1R_EL1, 1)
    eq(icv.read(ICC_EOIR1_EL1), 0, "reading a write-only register")
    icv.write(ICC_IAR1_EL1, 5)
    eq(icv.unhandled, [(ICC_SGI1R_EL1, True), (ICC_EOIR1_EL1, False), (ICC_IAR1_EL1, True)],
       "recorded (key, is_write)")


def test_irq_line_notifies_through_on_change():
    ich, icv, _ = icv_on(ich_lr(40, P, 0x20, True))
    seen = []
    ich.on_change = lambda: seen.append(icv.irq_line())
    icv.read(ICC_IAR1_EL1)
    icv.write(ICC_EOIR1_EL1, 40)
    eq(seen, [False, False], "irq_line at each notification (after IAR1, after EOIR1)")


# === the vGIC in GICv3 mode: flush / fold =========================================================
def snapshot(v: Vgic, vcpu: int, intids) -> dict:
    out = {}
    for i in intids:
        s = v.irq_state(i, vcpu)
        out[i] = (s.pending, s.active, s.pending_latch, s.line_level, s.vcpu)
    return out


def test_flush_then_fold_without_guest_action_keeps_the_state():
    v = vm(nr_vcpus=2, nr_lr=8)
    enable(v, SPI, edge=True, route=1, priority=0x40)
    enable(v, SPI2, route=1, priority=0x20)             # level
    enable(v, PPI, vcpu=1)
    pulse(v, SPI)
    v.set_level(SPI2, True)
    v.set_level(PPI, True, vcpu=1)
    v.send_sgi_v3(0, 3 << 24 | 0b10)
    v.redist_write(1, SGI + ISACTIVER, 4, 1 << 5)      # SGI 5 made active by the guest
    before = snapshot(v, 1, [SPI, SPI2, PPI, 3, 5])
    cpu_if = VgicV3CpuIf(8)
    v.flush_lr_state(1, cpu_if)
    eq(cpu_if.used_lrs, 5, "LRs used for 5 entries")
    eq(cpu_if.hcr & HCR_EN, HCR_EN, "flush sets ICH_HCR_EL2.En")
    eq(all(lr.group1 for lr in lrs(cpu_if)), True, "every LR is group 1 (the KVM GICv3 reset group)")
    v.fold_lr_state(1, cpu_if)
    eq(snapshot(v, 1, [SPI, SPI2, PPI, 3, 5]), before, "IRQ state after flush + fold with no guest action")
    eq(sorted(i.intid for i in v.ap_list[1]), [3, 5, PPI, SPI, SPI2], "vcpu1 ap_list after the round trip")


def test_guest_ack_and_eoi_takes_the_interrupt_off_the_list():
    v = vm()
    enable(v, SPI, edge=True, priority=0xA0)
    pulse(v, SPI)
    g = Guest(v)
    g.enter()
    eq(g.cpu_if.lr[0], ich_lr(SPI, P, 0xA0, group1=True), "the LR KVM's vgic_v3_populate_lr writes")
    eq(g.icv.irq_line(), True, "virtual IRQ")
    eq(g.ack(), SPI, "ICV_IAR1_EL1")
    g.eoi(SPI)
    eq(g.exit(), [], "maintenance conditions (an edge interrupt asks for none)")
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active, s.vcpu), (False, False, None), "SPI (pending, active, ap_list) after EOI + fold")
    eq(v.has_pending(0), False, "has_pending")


def test_lrs_are_filled_active_first_then_by_priority():
    v = vm()
    for intid, prio in ((40, 0x80), (41, 0x20), (42, 0x40), (43, 0xA0)):
        enable(v, intid, edge=True, priority=prio)
        pulse(v, intid)
    v.dist_write(0, ISACTIVER + 4, 4, 1 << (43 - 32))
    cpu_if = VgicV3CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lr_summary(cpu_if), [(43, PA), (41, P), (42, P), (40, P)], "LRs (vINTID, state)")
    g = Guest(v)
    v.fold_lr_state(0, cpu_if)
    g.enter()
    eq(g.handle_all(), [41, 42, 40], "the guest takes them in priority order")


def test_only_the_best_entries_fit_underflow_brings_the_rest():
    v = vm(nr_lr=2)
    for intid, prio in ((40, 0x80), (41, 0x20), (42, 0x40)):
        enable(v, intid, edge=True, priority=prio)
        pulse(v, intid)
    g = Guest(v, nr_lr=2)
    g.enter()
    eq([lr.vintid for lr in lrs(g.cpu_if)], [41, 42], "the two best of three")
    eq(g.cpu_if.hcr & HCR_UIE, HCR_UIE, "ICH_HCR_EL2.UIE with 3 entries for 2 LRs")
    eq(g.ich.misr & MISR_U, 0, "MISR.U with 2 valid LRs")
    g.eoi(g.ack())
    eq(g.ich.misr & MISR_U, MISR_U, "MISR.U with 1 valid LR")
    g.eoi(g.ack())
    eq(g.exit(), ["U"], "maintenance conditions at the exit")
    eq(g.cpu_if.hcr & HCR_UIE, 0, "fold clears UIE")
    g.enter()
    eq(lr_summary(g.cpu_if), [(40, P)], "the waiting interrupt on the next entry")


def test_pending_active_transitions_of_an_edge_interrupt():
    v = vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.enter()
    eq(g.ack(), SPI, "IAR1")
    g.exit()
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active), (False, True), "after the ack: (pending, active)")
    pulse(v, SPI)
    g.enter()
    eq(lr_summary(g.cpu_if), [(SPI, PA)], "LR of a pending+active edge interrupt")
    eq(g.ack(), 1023, "pending+active cannot be acknowledged")
    g.eoi(SPI)
    eq(lr_state(g.ich.lr[0]), P, "live LR after EOI of P+A")
    g.exit()
    eq((s.pending, s.active), (True, False), "after the EOI: (pending, active)")
    g.enter()
    eq(g.handle_all(), [SPI], "the second edge is delivered")
    g.exit()
    eq((s.pending, s.active, s.vcpu), (False, False, None), "finally: (pending, active, ap_list)")


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_line_still_high_after_eoi(edge):
    v = vm()
    enable(v, SPI, edge=edge)
    v.set_level(SPI, True)
    g = Guest(v)
    g.enter()
    eq(lrs(g.cpu_if)[0].eoi, not edge, "LR EOI bit 41 (level, non-HW: resample on EOI)")
    eq(g.handle_all(), [SPI], "interrupts taken")
    eq(g.ich.misr & MISR_EOI, 0 if edge else MISR_EOI, "live ICH_MISR_EL2.EOI")
    eq(g.exit(), [] if edge else ["EOI"], "maintenance conditions at the exit")
    eq(g.cpu_if.eisr, 0 if edge else 1, "saved ICH_EISR_EL2")
    eq(v.irq_state(SPI, 0).pending, not edge, "pending after EOI with the line still high")
    g.enter()
    eq(lr_summary(g.cpu_if), [] if edge else [(SPI, P)], "LRs on the next entry")


def test_level_interrupt_is_never_pending_active_in_an_lr():
    v = vm()
    enable(v, SPI)
    v.set_level(SPI, True)
    v.dist_write(0, ISACTIVER + 4, 4, 1 << (SPI - 32))
    cpu_if = VgicV3CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lr_summary(cpu_if), [(SPI, A)], "LR of an active level interrupt with its line high")


def test_level_interrupt_whose_line_dropped_is_gone_after_eoi():
    v = vm()
    enable(v, SPI)
    v.set_level(SPI, True)
    g = Guest(v)
    g.enter()
    eq(g.ack(), SPI, "IAR1")
    v.set_level(SPI, False)
    g.eoi(SPI)
    g.exit()
    s = v.irq_state(SPI, 0)
    eq((s.pending, s.active, s.vcpu), (False, False, None), "(pending, active, ap_list)")


def test_software_pending_level_interrupt_is_consumed_by_the_ack():
    v = vm()
    enable(v, SPI)
    v.dist_write(0, ISPENDR + 4, 4, 1 << (SPI - 32))
    g = Guest(v)
    g.enter()
    eq(g.handle_all(), [SPI], "delivered from GICD_ISPENDR")
    g.exit()
    eq(v.irq_state(SPI, 0).pending, False, "pending after ack + EOI")


def test_hw_interrupt_lr_and_deactivation():
    v = vm()
    folded = []
    v.on_hw_deactivate = lambda vcpu, pintid: folded.append((vcpu, pintid))
    v.map_hw(0, PPI, 27)
    enable(v, PPI)
    v.set_level(PPI, True, vcpu=0)
    g = Guest(v)
    g.enter()
    lr = lrs(g.cpu_if)[0]
    eq((lr.vintid, lr.state, lr.hw, lr.pintid, lr.eoi), (PPI, P, True, 27, False), "HW LR fields")
    eq(g.cpu_if.lr[0] >> 32 & 0x1FFF, 27, "pINTID in bits [44:32]")
    eq(g.ack(), PPI, "IAR1")
    g.eoi(PPI)
    eq(g.hw_deactivated, [27], "the ICV deactivation of the physical interrupt")
    eq(g.exit(), [], "no EOI maintenance for a HW interrupt")
    eq(folded, [(0, 27)], "Vgic.on_hw_deactivate at fold")
    g.enter()
    eq(lr_summary(g.cpu_if), [(PPI, P)], "the line is still high: pending again")
    g.ack()
    g.exit()
    g.enter()
    eq(lr_summary(g.cpu_if), [(PPI, A)], "HW interrupt active with its line high: LR active only")


def test_eoi_maintenance_and_lrenp_in_the_saved_misr():
    v = vm()
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.cpu_if.hcr |= HCR_LRENPIE | HCR_NPIE
    g.enter()
    eq(g.ack(), SPI, "IAR1")
    g.eoi(SPI2)                                         # an INTID no LR holds
    eq(g.ich.hcr >> 27, 1, "ICH_HCR_EL2.EOIcount")
    eq(g.exit(), ["LRENP", "NP"], "conditions in the saved MISR")
    eq(v.irq_state(SPI, 0).active, True, "the acknowledged interrupt stays active")


def test_handle_maintenance_names_the_vgrp_conditions():
    v = vm()
    cpu_if = VgicV3CpuIf(4)
    cpu_if.misr = 0xFF
    eq(v.handle_maintenance(0, cpu_if), ["EOI", "U", "LRENP", "NP", "VGrp0E", "VGrp0D", "VGrp1E", "VGrp1D"],
       "conditions")


def test_cpu_interface_type_must_match_the_version():
    with pytest.raises(TypeError, match="VgicV3CpuIf"):
        vm().flush_lr_state(0, VgicV2CpuIf(4))
    with pytest.raises(TypeError, match="VgicV2CpuIf"):
        Vgic(1).flush_lr_state(0, VgicV3CpuIf(4))


def test_has_pending_follows_the_group_enables():
    v = vm(ctlr=0b01)
    enable(v, SPI)
    v.set_level(SPI, True)
    eq(v.has_pending(0), False, "group 1 SPI with only EnableGrp0")
    v.dist_write(0, GICD_CTLR, 4, 0b10)
    eq(v.has_pending(0), True, "with EnableGrp1")
    enable(v, SPI2, group=0)
    v.set_level(SPI2, True)
    cpu_if = VgicV3CpuIf(4)
    v.flush_lr_state(0, cpu_if)
    eq(lr_summary(cpu_if), [(SPI, P)], "a group 0 SPI is not forwarded without EnableGrp0")


# === SGIs: ICC_SGI1R_EL1 ==========================================================================
def sgi1r(intid, targets=0, aff1=0, aff2=0, aff3=0, irm=0, rs=0) -> int:
    return (targets | aff1 << 16 | intid << 24 | aff2 << 32 | irm << 40 | rs << 44 | aff3 << 48)


def pending_sgis(v: Vgic, intid: int) -> list[int]:
    return [c for c in range(v.nr_vcpus) if v.irq_state(intid, c).pending]


@pytest.mark.parametrize("value,want", [
    (sgi1r(5, targets=0b1010), [1, 3]),
    (sgi1r(5, targets=0xFFF0), []),                     # Aff0 4-15: no such vCPUs
    (sgi1r(5, targets=0b1, aff1=1), []),                 # another cluster
    (sgi1r(5, irm=1, targets=0b1), [1, 2, 3]),           # IRM: all but self, TargetList ignored
    (sgi1r(5, targets=0b1), [0]),                        # self
])
def test_sgi1r_target_list(value, want):
    v = vm(nr_vcpus=4)
    got = v.send_sgi_v3(0, value)
    eq(pending_sgis(v, 5), want, f"vCPUs with SGI 5 pending after ICC_SGI1R_EL1 = {value:#x}")
    eq(got, want, "vCPUs to kick")


def test_sgi1r_routes_by_affinity_and_range_selector():
    mpidrs = [0x0000, 0x0001, 0x0100, 0x0101, 0x01_0000_0100, 0x0011]   # Aff3 1 for vCPU 4; Aff0 17 for vCPU 5
    v = vm(nr_vcpus=6, mpidrs=mpidrs)
    eq(v.send_sgi_v3(0, sgi1r(2, targets=0b11, aff1=1)), [2, 3], "Aff1 = 1, Aff0 0 and 1")
    eq(v.send_sgi_v3(0, sgi1r(3, targets=0b1, aff1=1, aff3=1)), [4], "Aff3 = 1, Aff1 = 1, Aff0 = 0")
    eq(v.send_sgi_v3(0, sgi1r(4, targets=0b10, rs=1)), [5], "RS = 1: Aff0 = 16 + 1")
    eq(v.send_sgi_v3(0, sgi1r(4, targets=0b10)), [1], "RS = 0: Aff0 = 1")


def test_sgi_has_one_pending_bit_per_target_and_no_source():
    v = vm(nr_vcpus=3)
    eq(v.send_sgi_v3(0, sgi1r(7, targets=0b100)), [2], "first request: kick vCPU 2")
    eq(v.send_sgi_v3(1, sgi1r(7, targets=0b100)), [], "a second source finds it already pending")
    g = Guest(v, vcpu=2)
    g.enter()
    eq(lr_summary(g.cpu_if), [(7, P)], "one LR, no source")
    eq(g.cpu_if.lr[0] & 0xFFFF_FFFF, 7, "vINTID: no CPUID bits in an ICH_LR")
    eq(g.ack(), 7, "IAR1 returns the plain INTID")
    g.eoi(7)
    g.exit()
    s = v.irq_state(7, 2)
    eq((s.pending, s.active, s.vcpu), (False, False, None), "SGI 7 after ack + EOI")


def test_sgi0r_generates_only_group0_sgis():
    v = vm(nr_vcpus=2)
    enable(v, 1, vcpu=1, group=0)
    eq(v.send_sgi_v3(0, sgi1r(1, targets=0b10), allow_group1=False), [1], "group 0 SGI from ICC_SGI0R")
    eq(v.send_sgi_v3(0, sgi1r(2, targets=0b10), allow_group1=False), [], "group 1 SGI from ICC_SGI0R")
    eq(v.send_sgi_v3(0, sgi1r(2, targets=0b10)), [1], "group 1 SGI from ICC_SGI1R")


def test_disabled_sgi_is_pending_but_not_forwarded():
    v = vm(nr_vcpus=2)
    v.redist_write(1, SGI + ICENABLER, 4, 1 << 4)
    v.send_sgi_v3(0, sgi1r(4, targets=0b10))
    eq((v.irq_state(4, 1).pending, v.has_pending(1)), (True, False), "(pending, has_pending) while disabled")
    v.redist_write(1, SGI + ISENABLER, 4, 1 << 4)
    eq(v.has_pending(1), True, "has_pending once enabled")


def test_send_sgi_api_in_v3_mode():
    v = vm(nr_vcpus=2)
    eq(v.send_sgi(0, 6, {0, 1}), [0, 1], "kicks")
    eq(v.send_sgi(1, 6, {0, 1}), [], "already pending: no per-source state")


# === distributor ===================================================================================
def test_gicd_ctlr_are_and_ds_are_rao_wi():
    v = Vgic(1, version=3)
    eq(v.dist_read(0, GICD_CTLR, 4), 0x50, "GICD_CTLR at reset: ARE (4) | DS (6)")
    v.dist_write(0, GICD_CTLR, 4, 0xFFFF_FFFF)
    eq(v.dist_read(0, GICD_CTLR, 4), 0x53, "after writing ones: EnableGrp0 | EnableGrp1, RWP reads 0")
    v.dist_write(0, GICD_CTLR, 4, 0)
    eq(v.dist_read(0, GICD_CTLR, 4), 0x50, "after writing 0: ARE and DS stay set")


@pytest.mark.parametrize("nr_spis,want_lines", [(64, 2), (0, 0), (960, 30)])
def test_gicd_typer_iidr_typer2_pidr2(nr_spis, want_lines):
    v = Vgic(4, nr_spis=nr_spis, version=3)
    t = v.dist_read(0, GICD_TYPER, 4)
    eq((t & 0x1F, t >> 5 & 7, t >> 19 & 0x1F, t >> 17 & 1, t >> 24 & 1, t >> 26 & 1),
       (want_lines, 0, 9, 0, 1, 1), "GICD_TYPER (ITLinesNumber, CPUNumber, IDbits, LPIS, A3V, RSS)")
    eq(v.dist_read(0, GICD_IIDR, 4), 0x4B00343B, "GICD_IIDR")
    eq(v.dist_read(0, GICD_TYPER2, 4), 0, "GICD_TYPER2")
    pidr2 = v.dist_read(0, GICD_PIDR2, 4)
    eq((pidr2 >> 4 & 0xF, pidr2), (3, 0x3B), "GICD_PIDR2 (ArchRev, value)")
    eq(v.unhandled, [], "unhandled accesses")


@pytest.mark.parametrize("offset,size", [
    (IGROUPR, 4), (ISENABLER, 4), (ICENABLER, 4), (ISPENDR, 4), (ICPENDR, 4), (ISACTIVER, 4), (ICACTIVER, 4),
    (IPRIORITYR + 27, 1), (IPRIORITYR + 4, 4), (ICFGR, 4), (ICFGR + 4, 4),
    (0x800 + 40, 1), (0xF00, 4), (0xF10, 4), (0xF20, 4), (IGRPMODR + 4, 4), (0xE00, 4),
])
def test_gicd_private_banks_and_legacy_registers_are_raz_wi(offset, size):
    """With ARE = 1, SGI/PPI state lives in the redistributors; GICD_ITARGETSR,
    GICD_SGIR and GICD_C/SPENDSGIR are RES0; IGRPMODR/NSACR RAZ/WI with DS = 1."""
    v = vm(nr_vcpus=2)
    v.redist_write(0, SGI + ISENABLER, 4, 1 << PPI)
    v.redist_write(0, SGI + IPRIORITYR + PPI, 1, 0x80)
    before = [v.redist_read(0, SGI + o, 4) for o in (IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR + 24,
                                                     ICFGR + 4)]
    eq(v.dist_read(0, offset, size), 0, f"GICD read at {offset:#x}")
    v.dist_write(0, offset, size, 0xFFFF_FFFF)
    eq(v.dist_read(1, offset, size), 0, f"GICD read at {offset:#x} after writing ones")
    after = [v.redist_read(0, SGI + o, 4) for o in (IGROUPR, ISENABLER, ISPENDR, ISACTIVER, IPRIORITYR + 24,
                                                    ICFGR + 4)]
    eq(after, before, "vcpu0's redistributor registers")
    eq([i for i in range(32) if v.irq_state(i, 0).pending], [], "private interrupts pending")
    eq(v.unhandled, [], "RES0 registers are not recorded as unhandled")


def test_gicd_spi_banks_work():
    v = vm()
    v.dist_write(0, ISENABLER + 4, 4, 1 << 8 | 1 << 9)
    eq(v.dist_read(0, ICENABLER + 4, 4), 0x300, "ICENABLER1 reads the SPI enables")
    v.dist_write(0, IPRIORITYR + SPI, 4, 0x1122_3344)
    eq(v.dist_read(0, IPRIORITYR + SPI, 4), 0x1020_3040, "SPI priorities, 5 bits")
    eq(v.dist_read(0, IGROUPR + 4, 4), 0xFFFF_FFFF, "IGROUPR1 at reset: group 1 (KVM)")
    v.dist_write(0, ICFGR + 8, 4, 2 << 16)
    eq(v.irq_state(SPI, 0).config, "edge", "SPI 40 configuration after ICFGR2")


def test_irouter_routes_spis_by_affinity():
    v = vm(nr_vcpus=3, mpidrs=[0x000, 0x100, 0x01_0000_0002])
    enable(v, SPI)
    v.set_level(SPI, True)
    eq(v.dist_read(0, IROUTER + 8 * SPI, 8), 0, "GICD_IROUTER40 at reset")
    eq([v.has_pending(c) for c in range(3)], [True, False, False], "reset route 0.0.0.0: vCPU 0")
    v.dist_write(0, IROUTER + 8 * SPI, 8, 0x100)
    eq([v.has_pending(c) for c in range(3)], [False, True, False], "route 0.0.1.0: vCPU 1")
    v.dist_write(0, IROUTER + 8 * SPI, 4, 0x2)
    v.dist_write(0, IROUTER + 8 * SPI + 4, 4, 0x1)
    eq(v.dist_read(0, IROUTER + 8 * SPI, 8), 0x01_0000_0002, "IROUTER written as two 32-bit halves")
    eq([v.has_pending(c) for c in range(3)], [False, False, True], "route 1.0.0.2 (Aff3): vCPU 2")
    v.dist_write(0, IROUTER + 8 * SPI, 8, 0x7)
    eq([v.has_pending(c) for c in range(3)], [False, False, False], "an affinity no vCPU has")
    v.dist_write(0, IROUTER + 8 * SPI, 8, 1 << 31 | 0x100)
    eq([v.has_pending(c) for c in range(3)], [True, False, False], "IRM = 1: vCPU 0")
    v.dist_write(0, IROUTER + 8 * SPI, 8, 0xFFFF_FFFF_FFFF_FFFF)
    eq(v.dist_read(0, IROUTER + 8 * SPI, 8), 0xFF_80FF_FFFF, "IROUTER RES0 bits")
    eq(v.unhandled, [], "unhandled accesses")


def test_active_spi_stays_with_its_vcpu_when_rerouted():
    v = vm(nr_vcpus=2)
    enable(v, SPI, edge=True)
    pulse(v, SPI)
    g = Guest(v)
    g.enter()
    g.ack()
    g.exit()
    v.dist_write(0, IROUTER + 8 * SPI, 8, 1)
    eq(v.irq_state(SPI, 0).vcpu, 0, "an active SPI is deactivated where it runs")
    g.enter()
    g.eoi(SPI)
    g.exit()
    pulse(v, SPI)
    eq(v.irq_state(SPI, 0).vcpu, 1, "the next edge goes to the new route")


@pytest.mark.parametrize("offset,size,recorded", [
    (IROUTER + 8 * 5, 8, False),           # IROUTER of a private INTID: reserved, RAZ/WI
    (IROUTER + 8 * 96, 8, True),           # INTID 96: not implemented with 64 SPIs
    (IROUTER + 8 * SPI, 2, True),          # size
    (IROUTER + 8 * SPI + 4, 8, True),      # alignment
    (0x10, 4, True), (0x40, 4, True),      # GICD_STATUSR, GICD_SETSPI_NSR: not modelled
    (GICD_CTLR, 2, True), (ISENABLER + 4, 1, True),
])
def test_gicd_odd_accesses(offset, size, recorded):
    v = vm()
    eq(v.dist_read(0, offset, size), 0, f"read of {offset:#x} size {size}")
    v.dist_write(0, offset, size, 0xFFFF_FFFF)
    eq(v.unhandled, [(offset, False), (offset, True)] if recorded else [], "recorded (offset, is_write)")


# === redistributors ================================================================================
def test_gicr_typer_affinity_processor_number_and_last():
    mpidrs = [0x8000_0000, 0x8000_0101, 0x03_8000_0200]     # bit 31 (RES1) is not affinity
    v = Vgic(3, version=3, mpidrs=mpidrs)
    got = [v.redist_read(f, RD + GICR_TYPER, 8) for f in range(3)]
    eq(got, [0x0000_0000 << 32 | 0 << 8, 0x0000_0101 << 32 | 1 << 8, 0x0300_0200 << 32 | 2 << 8 | 1 << 4],
       "GICR_TYPER of frames 0-2 (Affinity_Value, Processor_Number, Last)")
    eq((v.redist_read(2, RD + GICR_TYPER, 4), v.redist_read(2, RD + GICR_TYPER + 4, 4)),
       (2 << 8 | 1 << 4, 0x0300_0200), "GICR_TYPER as two 32-bit reads")
    v.redist_write(2, RD + GICR_TYPER, 8, 0)
    eq(v.redist_read(2, RD + GICR_TYPER, 8), got[2], "GICR_TYPER is read-only")


def test_gicr_ctlr_iidr_pidr2_waker():
    v = vm(nr_vcpus=2)
    v.redist_write(0, RD + GICR_CTLR, 4, 1)
    eq(v.redist_read(0, RD + GICR_CTLR, 4), 0, "GICR_CTLR: no LPIs, RAZ/WI")
    eq(v.redist_read(0, RD + GICR_IIDR, 4), 0x4B00343B, "GICR_IIDR")
    eq(v.redist_read(1, RD + GICR_PIDR2, 4), 0x3B, "GICR_PIDR2")
    eq(v.redist_read(1, RD + GICR_WAKER, 4), 0b110, "GICR_WAKER at reset: ProcessorSleep, ChildrenAsleep")
    v.redist_write(1, RD + GICR_WAKER, 4, 0)
    eq((v.redist_read(1, RD + GICR_WAKER, 4), v.redist_read(0, RD + GICR_WAKER, 4)), (0, 0b110),
       "GICR_WAKER (frame 1 awake, frame 0 untouched)")
    v.redist_write(1, RD + GICR_WAKER, 4, 0b101)
    eq(v.redist_read(1, RD + GICR_WAKER, 4), 0, "ChildrenAsleep and bit 0 are not writable")
    v.redist_write(1, RD + GICR_WAKER, 4, 0b010)
    eq(v.redist_read(1, RD + GICR_WAKER, 4), 0b110, "ChildrenAsleep follows ProcessorSleep")
    eq(v.unhandled, [], "unhandled accesses")


def test_sgi_base_banks_belong_to_the_frame():
    v = vm(nr_vcpus=2)
    v.redist_write(1, SGI + IGROUPR, 4, 0xFFFF_FFFE)
    v.redist_write(1, SGI + ICENABLER, 4, 0xFFFF_FFFF)
    v.redist_write(1, SGI + ISENABLER, 4, 1 << 3 | 1 << PPI)
    eq((v.redist_read(1, SGI + IGROUPR, 4), v.redist_read(0, SGI + IGROUPR, 4)), (0xFFFF_FFFE, 0xFFFF_FFFF),
       "GICR_IGROUPR0 (frame 1, frame 0)")
    eq((v.redist_read(1, SGI + ISENABLER, 4), v.redist_read(0, SGI + ISENABLER, 4)), (1 << 3 | 1 << PPI, 0xFFFF),
       "GICR_ISENABLER0 (frame 1: SGI enables are programmable; frame 0: SGIs enabled at reset)")
    eq(v.irq_state(0, 1).group, 0, "SGI 0 of vCPU 1 is group 0")


def test_sgi_base_pending_active_priority_config():
    v = vm(nr_vcpus=2)
    v.redist_write(1, SGI + ISPENDR, 4, 1 << 2 | 1 << PPI)
    eq(v.redist_read(1, SGI + ISPENDR, 4), 1 << 2 | 1 << PPI, "GICR_ISPENDR0: SGIs too (GICv3)")
    eq(v.redist_read(0, SGI + ICPENDR, 4), 0, "frame 0 unaffected")
    v.redist_write(1, SGI + ICPENDR, 4, 1 << 2)
    eq(v.redist_read(1, SGI + ISPENDR, 4), 1 << PPI, "after GICR_ICPENDR0")
    v.redist_write(1, SGI + ISACTIVER, 4, 1 << 9)
    eq((v.redist_read(1, SGI + ICACTIVER, 4), v.irq_state(9, 1).active), (1 << 9, True), "GICR_ISACTIVER0")
    v.redist_write(1, SGI + ICACTIVER, 4, 0xFFFF_FFFF)
    eq(v.redist_read(1, SGI + ISACTIVER, 4), 0, "after GICR_ICACTIVER0")
    v.redist_write(1, SGI + IPRIORITYR + PPI, 1, 0xFF)
    v.redist_write(1, SGI + IPRIORITYR + 4, 4, 0x1122_3344)
    eq((v.redist_read(1, SGI + IPRIORITYR + PPI, 1), v.redist_read(1, SGI + IPRIORITYR + 24, 4)),
       (0xF8, 0xF8 << 24), "GICR_IPRIORITYR byte and word")
    eq(v.redist_read(1, SGI + IPRIORITYR + 4, 4), 0x1020_3040, "GICR_IPRIORITYR1 (SGIs 4-7)")
    eq(v.redist_read(0, SGI + IPRIORITYR + 24, 4), 0, "frame 0 priorities")
    v.redist_write(1, SGI + ICFGR, 4, 0)
    eq(v.redist_read(1, SGI + ICFGR, 4), 0xAAAA_AAAA, "GICR_ICFGR0: SGIs are edge, read-only")
    v.redist_write(1, SGI + ICFGR + 4, 4, 0xFFFF_FFFF)
    eq((v.redist_read(1, SGI + ICFGR + 4, 4), v.redist_read(0, SGI + ICFGR + 4, 4)), (0xAAAA_AAAA, 0),
       "GICR_ICFGR1 (frame 1 after writing ones, frame 0)")
    v.redist_write(1, SGI + IGRPMODR, 4, 0xFFFF_FFFF)
    eq(v.redist_read(1, SGI + IGRPMODR, 4), 0, "GICR_IGRPMODR0: RAZ/WI")
    eq(v.unhandled, [], "unhandled accesses")


@pytest.mark.parametrize("offset,size", [
    (RD + 0x10, 4), (RD + GICR_WAKER, 8), (RD + GICR_CTLR, 2), (RD + 0x70, 8), (RD + GICR_TYPER + 4, 8),
    (SGI + IGROUPR + 4, 4), (SGI + ISENABLER, 1), (SGI + IPRIORITYR + 32, 4), (SGI + ICFGR + 8, 4),
    (SGI + 0x800, 4), (SGI + 0xF00, 4), (0x20000, 4),
])
def test_redistributor_non_registers_are_recorded(offset, size):
    v = vm()
    eq(v.redist_read(0, offset, size), 0, f"read of {offset:#x} size {size}")
    v.redist_write(0, offset, size, 0xFFFF_FFFF)
    eq(v.unhandled, [(offset, False), (offset, True)], "recorded (offset, is_write)")


def test_redistributor_and_sgi1r_are_gicv3_only():
    v = Vgic(2)
    for call in (lambda: v.redist_read(0, 0, 4), lambda: v.redist_write(0, 0x14, 4, 0),
                 lambda: v.send_sgi_v3(0, 1)):
        with pytest.raises(RuntimeError, match="GICv3"):
            call()
    with pytest.raises(ValueError, match="no vCPU"):
        vm(nr_vcpus=2).redist_read(2, 0, 4)


# === configuration =================================================================================
@pytest.mark.parametrize("kw,match", [
    (dict(nr_vcpus=1, version=4), "2 or 3"),
    (dict(nr_vcpus=513, version=3), "1 to 512"),
    (dict(nr_vcpus=2, version=3, mpidrs=[0]), "1 MPIDRs for 2"),
    (dict(nr_vcpus=2, version=3, mpidrs=[1, 0x8000_0001]), "distinct"),
    (dict(nr_vcpus=1, version=2, mpidrs=[0]), "GICv3"),
])
def test_bad_configuration_is_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Vgic(**kw)


def test_more_than_eight_vcpus_in_gicv3_mode():
    v = vm(nr_vcpus=20)
    eq(v.send_sgi_v3(0, sgi1r(1, targets=0b1, rs=1)), [16], "RS = 1 reaches vCPU 16 (Aff0 16)")
    eq(v.redist_read(19, RD + GICR_TYPER, 8), 19 << 32 | 19 << 8 | 1 << 4, "last frame's GICR_TYPER")
