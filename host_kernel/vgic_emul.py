"""--no-vgic: the CPU interface without virtualization help.  Every GICC access
(GICv2, stage 2 leaves the page unmapped) or ICC_* access (GICv3, EC 0x18) traps
to the host and is emulated here on a software copy of the list-register
state; the virtual IRQ is injected with HCR_EL2.VI, as a hypervisor on a GIC
without virtualization extensions would."""
from __future__ import annotations

from typing import Callable

from gic.v2_hyp import GichV2, VgicV2CpuIf
from gic.v2_vcpuif import VirtualCpuInterface

SOFT_LRS = 16


class _SoftCpuInterface:
    """The list registers live in the vGIC between traps: they are populated into a
    software interface around every emulated access, and around every guest run so
    the virtual IRQ line can be computed."""

    def __init__(self, vcpu, state, gich, iface):
        self.vcpu, self.state, self.gich, self.iface = vcpu, state, gich, iface
        self.iface.unhandled = vcpu.vm.gicc_unhandled          # reported by the in-kernel bus

    def flush(self) -> None:
        # VMCR and the active priorities belong to the interface the guest programs
        # through its trapped accesses: keep them; only the list registers are repopulated.
        self.gich.store(self.state)
        self.vcpu.vm.vgic.flush_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def fold(self) -> None:
        self.gich.store(self.state)
        self.vcpu.vm.vgic.fold_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def irq_line(self) -> bool:
        return self.iface.irq_line()

    def trapped(self, access: Callable[[], int | None]) -> int | None:
        """A trapped access runs between the exit's fold and the next entry's flush."""
        self.flush()
        try:
            return access()
        finally:
            self.fold()


class EmulatedCpuInterface(_SoftCpuInterface):
    """GICv2: an in-kernel MMIO device at the GICC address (offsets from its base)."""
    name = "gicc-emul"

    def __init__(self, vcpu):
        gich = GichV2(SOFT_LRS)
        super().__init__(vcpu, VgicV2CpuIf(SOFT_LRS), gich, VirtualCpuInterface(gich))

    def read(self, vcpu: int, offset: int, size: int) -> int:
        return self.trapped(lambda: self.iface.read(offset, size))

    def write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self.trapped(lambda: self.iface.write(offset, size, value))


class EmulatedCpuInterfaceV3(_SoftCpuInterface):
    """GICv3: ICC_* system registers, reached through the sys_regs table."""

    def __init__(self, vcpu):
        from gic.v3_hyp import IchV3, VgicV3CpuIf
        from gic.v3_vcpuif import VirtualCpuInterfaceV3
        gich = IchV3(SOFT_LRS)
        super().__init__(vcpu, VgicV3CpuIf(SOFT_LRS), gich, VirtualCpuInterfaceV3(gich))

    def sysreg(self, key: tuple, is_read: bool, value: int) -> int | None:
        if is_read:
            return self.trapped(lambda: self.iface.read(key))
        return self.trapped(lambda: self.iface.write(key, value))
