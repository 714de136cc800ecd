"""Hypervisor designs (DESIGN.md section 5): where the host runs, what a trap
switches, and what is deferred to vCPU load/put.

- nvhe  (split-mode KVM/ARM, Linux 4.0 as measured in ISCA'16): the highvisor
  runs at EL1, so every exit saves the guest and restores the host, and every
  entry takes a second trap (HVC) into the lowvisor.
- vhe   (KVM with HCR_EL2.E2H/TGE, ATC'17): the host kernel runs at EL2; no host
  EL1 context, no second trap.  Optimised ("lazy"): guest EL1 state, VTTBR, the
  timer and the vGIC's VMCR/APR move at vcpu_load/put, the list registers only
  when in use, FP/SIMD only when the guest uses it.
- type1 (Xen-like): the hypervisor runs entirely at EL2 and handles hypercalls,
  the vGIC and the timers there, touching only the guest's GP registers on a
  trap; full context switches happen only between vCPUs.  Guest I/O goes to a
  driver domain (dom0) on its own pCPU through an event channel.

`lazy` (the default for vhe, as ATC'17's optimised KVM; `--eager-switch` turns
it off, and `--lazy-switch` turns it on for nvhe, the optimised split mode of
later kernels, and for type1, whose only eager part is Xen's FP/SIMD switch
between vCPUs): list registers only when used, FP/SIMD only when used, timer
and VMCR/APR deferred.  The model always moves the whole state (Python copies cost
nothing); the design decides what the hardware path would touch, and charges
exactly that, on the exit or at load/put.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.ledger import HIGHVISOR

DESIGNS = ("nvhe", "vhe", "type1")
# As measured/described: Linux 4.0 KVM switched eagerly; ATC'17's VHE KVM lazily;
# Xen ARM saves and restores FP/SIMD on every vCPU context switch.
DEFAULT_LAZY = {"nvhe": False, "vhe": True, "type1": False}
ALIASES = {"kvm-split": "nvhe", "split": "nvhe", "xen": "type1"}
HOST_AT_EL2 = "host kernel EL2"
XEN = "Xen EL2"
DOM0 = "dom0"


@dataclass(frozen=True)
class Design:
    name: str = "nvhe"
    lazy: bool = False
    lazy_fp: bool | None = None     # FP/SIMD on its own (--fp); None: as `lazy`
    # type 1: world switch -> the driver domain's step sequences (host_kernel.dom0.Dom0Paths),
    # handed to the lowvisor by the host that builds the design, as the exit path is
    driver_domain: Callable | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def make(name: str, lazy: bool | None = None, lazy_fp: bool | None = None) -> "Design":
        name = ALIASES.get(name, name)
        if name not in DESIGNS:
            raise ValueError(f"--hyp-mode {name!r}: must be one of {', '.join(DESIGNS)} (or kvm-split)")
        return Design(name, DEFAULT_LAZY[name] if lazy is None else lazy, lazy_fp)

    @property
    def fp_lazy(self) -> bool:
        """FP/SIMD switched only when the guest uses it (CPTR_EL2.TFP traps the first use)."""
        return self.lazy if self.lazy_fp is None else self.lazy_fp

    @property
    def label(self) -> str:
        return f"{self.name}{'' if self.lazy == DEFAULT_LAZY[self.name] else (' lazy' if self.lazy else ' eager')}"

    @property
    def host_at_el2(self) -> bool:
        """No HVC back into EL2 to enter the guest, no ERET down to a host at EL1."""
        return self.name != "nvhe"

    @property
    def switches_host_el1(self) -> bool:
        return self.name == "nvhe"

    @property
    def saves_host_gp(self) -> bool:
        """KVM saves the host's callee-saved registers around __guest_enter; Xen has
        no host context, its own state lives on its stack."""
        return self.name != "type1"

    @property
    def per_exit_el1(self) -> bool:
        """Guest EL1 system registers on every exit: the split-mode host needs EL1;
        VHE defers them when lazy; Xen never touches them on a trap."""
        return self.name == "nvhe" or (self.name == "vhe" and not self.lazy)

    @property
    def per_exit_traps(self) -> bool:
        """HCR/CPTR/HSTR/MDCR switch on every exit for KVM (the host needs its own
        configuration, TGE under VHE); Xen keeps the guest's while it handles a trap."""
        return self.name != "type1"

    @property
    def per_exit_vttbr(self) -> bool:
        return self.name == "nvhe" or (self.name == "vhe" and not self.lazy)

    @property
    def per_exit_timer(self) -> bool:
        return self.name != "type1" and not self.lazy

    @property
    def per_exit_fp(self) -> bool:
        """Xen switches FP/SIMD only between vCPUs (eagerly, or lazily with --fp lazy)."""
        return self.name != "type1" and not self.fp_lazy

    @property
    def per_exit_vgic(self) -> str:
        """'all' (GICH/ICH snapshot every exit), 'used' (only the LRs in use, nothing if
        none: KVM 4.12+), 'none' (Xen: the LRs stay loaded while the vCPU runs)."""
        if self.name == "type1":
            return "none"
        return "used" if self.lazy else "all"

    @property
    def puts_on_user_exit(self) -> bool:
        """A user-space exit ends KVM_RUN: kvm_vcpu_ioctl's vcpu_put, then vcpu_load on the
        next KVM_RUN (kvm_arch_vcpu_put/load), move whatever the design defers.  Xen has
        no user-space exit: its ioreq to dom0 blocks the vCPU (host_kernel/dom0.py)."""
        return self.name != "type1"

    @property
    def where(self) -> str:
        """Where exit handling runs (the ledger's location for host software)."""
        return {"nvhe": HIGHVISOR, "vhe": HOST_AT_EL2, "type1": XEN}[self.name]


NVHE = Design()

# The type-1 hypervisor's own software in place of the host kernel's (same call
# sites, Xen's paths and costs): KVM cost name -> (Xen cost name, what it does).
XEN_PATHS = {
    "handle_exit": ("xen_trap_dispatch", "do_trap_guest_sync: dispatch on ESR_EL2.EC"),
    "hvc_handler": ("xen_hypercall", "do_trap_hypercall: call through the hypercall table, result in x0"),
    "run_loop": ("xen_leave_hypervisor", "leave_hypervisor_tail: softirqs, return to the guest"),
    "vgic_flush": ("xen_vgic_flush", "gic_inject -> gic_restore_pending_irqs: nothing pending"),
    "vgic_sync": ("xen_vgic_sync", "enter_hypervisor_head -> gic_clear_lrs: no LR in use"),
    "timer_flush": ("xen_vtimer_check", "virtual timer stays loaded: check only"),
    "timer_sync": ("xen_vtimer_check", "virtual timer stays loaded: check only"),
    "vgic_lr_populate": ("xen_lr_write", "gic_raise_guest_irq: write a list register"),
    "vgic_lr_fold": ("xen_lr_read", "gic_clear_lrs -> gic_update_one_lr: read back a list register"),
    "mmio_decode": ("xen_mmio_decode", "try_handle_mmio: decode the syndrome, find the handler"),
    "kernel_mmio_device": ("xen_mmio_device", "an emulated device in Xen (vGIC distributor, bench-io)"),
    "ioeventfd_write": ("xen_mmio_noop", "the page's MMIO handler in Xen completes the write (no device model)"),
    "host_irq_entry": ("xen_irq_entry", "do_trap_irq: gic_interrupt"),
    "timer_irq_handler": ("xen_vtimer_irq", "vtimer_interrupt: inject the virtual timer"),
    "host_event_handler": ("xen_softirq", "an IPI or timer softirq in Xen"),
    "maintenance_irq_handler": ("xen_maintenance_irq", "maintenance interrupt: nothing to do"),
    "vcpu_block": ("xen_vcpu_block", "vcpu_block: schedule() to another vCPU or idle"),
    "vcpu_wakeup": ("xen_vcpu_wake", "vcpu_wake: unblock, schedule the vCPU in"),
    "sched_switch": ("xen_context_switch", "schedule(): context_switch to another vCPU"),
    "sysreg_emulate": ("xen_sysreg", "do_sysreg: emulate a trapped system register"),
    "inject_fault": ("xen_inject", "inject a synchronous exception into the guest"),
    "vmm_mmio_dispatch": ("vmm_mmio_dispatch", "dom0 device model (QEMU): dispatch the ioreq"),
    "user_mmio_device": ("user_mmio_device", "dom0 device model: PL011 register access"),
    "kvm_irq_line": ("kvm_irq_line", "dom0 device model: XEN_DMOP_set_irq_level hypercall for the SPI"),
}
TYPE1_KEYS = tuple(sorted({k for k, _ in XEN_PATHS.values()} - {"vmm_mmio_dispatch", "user_mmio_device",
                                                                "kvm_irq_line"}
                          | {"xen_evtchn_send", "xen_vgic_inject", "xen_sched_wake", "xen_runq_tickle",
                             "xen_schedule", "evtchn_upcall"}))


def configure_ledger(ledger, design: Design, dom0=None) -> None:
    """Host software charged at the design's own location (and, for type 1, Xen's paths;
    a user-space exit becomes an ioreq served by dom0's device model)."""
    ledger.where_map = {HIGHVISOR: design.where}
    if design.name == "type1":
        if dom0 is None:
            raise ValueError("type1: the design carries no driver-domain paths (Design.driver_domain)")
        ledger.where_map["VMM user space"] = "dom0 user space"
        ledger.key_map = {**XEN_PATHS, "exit_to_user": dom0.ioreq_to_dom0, "kvm_run_ioctl": dom0.ioreq_done}
