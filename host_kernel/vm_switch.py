"""armvirt's VM-switch hypercall, for the VM switch microbenchmark (DESIGN.md
section 4, "VM switch"): HVC with w0 = 0x4b000010 (SMCCC vendor-specific
hypervisor service range) and x1 = a value to hand over.

The caller gives up its pCPU to the peer: a vCPU of another VM placed on the
same pCPU.  If the peer is waiting in this call, that call returns the value
now and the peer runs; the caller waits until the peer calls again and
returns with the value of that call.  Every call therefore returns the value
of the peer's next call, and "now - value" is one VM switch.  With no peer VM,
or once the peer's VM has shut down, the call returns -1 (NOT_SUPPORTED):
the last call of the VM that ran second has nothing left to answer it.

A waiting vCPU is not woken by interrupts: it sleeps in the hypercall, not
in WFI, as a directed yield does."""
from __future__ import annotations

from engine.ledger import HIGHVISOR
from timers.generic_timer import NEVER

VM_SWITCH_CALL = 0x4b000010
NO_PEER = 2**64 - 1


def live_peers(vcpu) -> list:
    """vCPUs of other, still running VMs that share this vCPU's pCPU."""
    return [p for vm in vcpu.vm.host.vms if vm is not vcpu.vm and not vm.finished
            for p in vm.vcpus if p.cpu is vcpu.cpu and p.powered_on]


def handle(vcpu) -> bool:
    """Returns True if the caller now waits (its KVM_RUN returns EXIT_BLOCKED)."""
    peers = live_peers(vcpu)
    if not peers:
        vcpu.ctx.set_x(0, NO_PEER)
        return False
    now = vcpu.cpu.cycles
    waiting = next((p for p in peers if p.baton_waiting), None)
    if waiting is not None:
        waiting.ctx.set_x(0, vcpu.ctx.x(1))
        waiting.baton_waiting = False
        waiting.blocked_until = now
    vcpu.baton_waiting = True
    vcpu.ledger.charge_named(HIGHVISOR, "yield to the peer VM: kvm_vcpu_block, schedule() out", "vcpu_block")
    vcpu.blocked_until = NEVER
    return True


def release_orphans(host, now: int) -> None:
    """A VM shut down or a vCPU went off: calls left with no peer return -1."""
    for vm in host.vms:
        if vm.finished:
            continue
        for v in vm.vcpus:
            if v.baton_waiting and not live_peers(v):
                v.ctx.set_x(0, NO_PEER)
                v.baton_waiting = False
                v.blocked_until = max(now, v.cpu.cycles)
