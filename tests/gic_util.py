"""Helpers shared by the GIC tests: assertions that show expected and observed
values, the world switch's copy of a vCPU's vGIC state in and out of the live
GICH registers (el2/world_switch.py restore_vgic / save_vgic), and a guest that
drives the virtual CPU interface."""
from __future__ import annotations

from gic.lr import ListReg
from gic.v2_hyp import (GICH_APR, GICH_EISR0, GICH_EISR1, GICH_ELRSR0, GICH_ELRSR1, GICH_HCR, GICH_LR0,
                        GICH_MISR, GICH_VMCR, GichV2, VgicV2CpuIf)
from gic.v2_vcpuif import GICV_CTLR, GICV_DIR, GICV_EOIR, GICV_IAR, GICV_PMR, VirtualCpuInterface
from gic.vgic import Vgic


def show(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v > 9:
        return hex(v)
    return repr(v)


def eq(observed, expected, what: str) -> None:
    assert observed == expected, f"{what}: expected {show(expected)}, observed {show(observed)}"


def enter_guest(gich: GichV2, cpu_if: VgicV2CpuIf) -> None:
    """WorldSwitch.restore_vgic: HCR, VMCR, APR and the used LRs."""
    gich.write(GICH_HCR, cpu_if.hcr)
    gich.write(GICH_VMCR, cpu_if.vmcr)
    gich.write(GICH_APR, cpu_if.apr)
    for i in range(gich.nr_lr):
        if i < cpu_if.used_lrs:
            gich.write(GICH_LR0 + 4 * i, cpu_if.lr[i])
        else:
            gich.lr[i] = 0


def exit_guest(gich: GichV2, cpu_if: VgicV2CpuIf) -> None:
    """WorldSwitch.save_vgic: everything, then HCR = 0."""
    cpu_if.vmcr, cpu_if.misr = gich.read(GICH_VMCR), gich.read(GICH_MISR)
    cpu_if.eisr = gich.read(GICH_EISR0) | gich.read(GICH_EISR1) << 32
    cpu_if.elrsr = gich.read(GICH_ELRSR0) | gich.read(GICH_ELRSR1) << 32
    cpu_if.apr = gich.read(GICH_APR)
    for i in range(gich.nr_lr):
        cpu_if.lr[i] = gich.read(GICH_LR0 + 4 * i)
    gich.write(GICH_HCR, 0)


def lrs(cpu_if: VgicV2CpuIf) -> list[ListReg]:
    return [ListReg.decode(v) for v in cpu_if.lr[:cpu_if.used_lrs]]


def lr_summary(cpu_if: VgicV2CpuIf) -> list[tuple[int, int, int]]:
    """(vINTID, state, source CPU) of each used LR."""
    return [(lr.vintid, lr.state, lr.source_cpu) for lr in lrs(cpu_if)]


def new_vm(nr_vcpus: int = 1, nr_lr: int = 4, nr_spis: int = 64, ctlr: int = 1) -> Vgic:
    """A VM whose guest enabled the distributor (group 0 by default)."""
    v = Vgic(nr_vcpus=nr_vcpus, nr_spis=nr_spis, nr_lr=nr_lr)
    v.dist_write(0, 0x000, 4, ctlr)
    return v


def enable(v: Vgic, intid: int, vcpu: int = 0, priority: int | None = None, edge: bool | None = None,
           target: int | None = None) -> None:
    """Program one interrupt the way a guest driver does, through the distributor."""
    if priority is not None:
        v.dist_write(vcpu, 0x400 + intid, 1, priority)
    if edge is not None:
        reg, shift = 0xC00 + intid // 16 * 4, intid % 16 * 2
        cur = v.dist_read(vcpu, reg, 4)
        v.dist_write(vcpu, reg, 4, (cur & ~(3 << shift)) | ((2 if edge else 0) << shift))
    if target is not None:
        v.dist_write(vcpu, 0x800 + intid, 1, target)
    v.dist_write(vcpu, 0x100 + intid // 32 * 4, 4, 1 << intid % 32)


class Guest:
    """One vCPU running on one physical CPU: its saved state, the live GICH and
    the GICV the guest reaches without traps."""

    def __init__(self, vgic: Vgic, vcpu: int = 0, nr_lr: int = 4):
        self.vgic, self.vcpu = vgic, vcpu
        self.cpu_if = VgicV2CpuIf(nr_lr)
        self.gich = GichV2(nr_lr)
        self.gicv = VirtualCpuInterface(self.gich)
        self.hw_deactivated: list[int] = []
        self.gicv.on_hw_deactivate = self.hw_deactivated.append
        self.cpu_if.vmcr = 1 | 0x1F << 27          # the guest enabled its interface, PMR 0xF8

    def enter(self) -> None:
        self.vgic.flush_lr_state(self.vcpu, self.cpu_if)
        enter_guest(self.gich, self.cpu_if)

    def exit(self) -> list[str]:
        exit_guest(self.gich, self.cpu_if)
        conditions = self.vgic.handle_maintenance(self.vcpu, self.cpu_if)
        self.vgic.fold_lr_state(self.vcpu, self.cpu_if)
        return conditions

    def ack(self) -> int:
        return self.gicv.read(GICV_IAR, 4)

    def eoi(self, value: int) -> None:
        self.gicv.write(GICV_EOIR, 4, value)

    def dir(self, value: int) -> None:
        self.gicv.write(GICV_DIR, 4, value)

    def handle_all(self) -> list[int]:
        """Acknowledge and EOI until the interface reads spurious."""
        seen = []
        while (iar := self.ack()) != 1023:
            seen.append(iar)
            self.eoi(iar)
        return seen


def gicv_on(gich: GichV2, ctlr: int = 1, pmr: int = 0xF8) -> VirtualCpuInterface:
    """A virtual CPU interface on `gich` with HCR.En and the guest's CTLR/PMR set."""
    from gic.v2_hyp import HCR_EN
    gich.hcr |= HCR_EN
    gicv = VirtualCpuInterface(gich)
    gicv.write(GICV_CTLR, 4, ctlr)
    gicv.write(GICV_PMR, 4, pmr)
    return gicv
