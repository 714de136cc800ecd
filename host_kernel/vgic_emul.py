"""--no-vgic: the CPU interface without virtualization help.  Every GICC access
traps to the host (stage 2 leaves the GICC page unmapped) and is emulated here
on a software copy of the list-register state; the virtual IRQ is injected
with HCR_EL2.VI, as a hypervisor on a GIC without virtualization extensions
would."""
from __future__ import annotations

from gic.v2_hyp import GichV2, VgicV2CpuIf
from gic.v2_vcpuif import VirtualCpuInterface

SOFT_LRS = 16


class EmulatedCpuInterface:
    name = "gicc-emul"

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.state = VgicV2CpuIf(SOFT_LRS)
        self.gich = GichV2(SOFT_LRS)
        self.iface = VirtualCpuInterface(self.gich)
        self.iface.unhandled = vcpu.vm.gicc_unhandled          # reported by the in-kernel bus

    def flush(self) -> None:
        # VMCR and APR belong to the interface the guest programs through its trapped
        # GICC accesses: keep them; only the list registers are repopulated.
        self.state.vmcr, self.state.apr = self.gich.vmcr, self.gich.apr
        self.vcpu.vm.vgic.flush_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def fold(self) -> None:
        self.gich.store(self.state)
        self.vcpu.vm.vgic.fold_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def irq_line(self) -> bool:
        return self.iface.irq_line()

    # in-kernel MMIO device (offsets from the GICC base).  A trapped access runs between
    # the exit's fold and the next entry's flush: populate the software LRs around it.
    def read(self, vcpu: int, offset: int, size: int) -> int:
        self.flush()
        value = self.iface.read(offset, size)
        self.fold()
        return value

    def write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self.flush()
        self.iface.write(offset, size, value)
        self.fold()


class EmulatedCpuInterfaceV3:
    """--no-vgic on GICv3: every ICC_* access traps (EC 0x18) and is emulated on a
    software copy of the ICH state; injection through HCR_EL2.VI."""

    def __init__(self, vcpu):
        from gic.v3_hyp import IchV3, VgicV3CpuIf
        from gic.v3_vcpuif import VirtualCpuInterfaceV3
        self.vcpu = vcpu
        self.state = VgicV3CpuIf(SOFT_LRS)
        self.gich = IchV3(SOFT_LRS)
        self.iface = VirtualCpuInterfaceV3(self.gich)
        self.iface.unhandled = vcpu.vm.gicc_unhandled

    def flush(self) -> None:
        self.state.vmcr, self.state.ap0r, self.state.ap1r = self.gich.vmcr, list(self.gich.ap0r), list(self.gich.ap1r)
        self.vcpu.vm.vgic.flush_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def fold(self) -> None:
        self.gich.store(self.state)
        self.vcpu.vm.vgic.fold_lr_state(self.vcpu.index, self.state)
        self.gich.load(self.state)

    def irq_line(self) -> bool:
        return self.iface.irq_line()

    def sysreg(self, key: tuple, is_read: bool, value: int) -> int | None:
        """A trapped ICC_* access, between the exit's fold and the next flush."""
        self.flush()
        if is_read:
            result = self.iface.read(key)
        else:
            self.iface.write(key, value)
            result = None
        self.fold()
        return result
