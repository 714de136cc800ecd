"""The host: physical CPUs with their lowvisors, host memory, VMIDs, and the
VMs created on it (KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping

from engine.core import PhysicalCpu
from engine.ledger import Ledger
from engine.trace import NULL, Tracer
from el2.context import el1_bank, fp_bank
from el2.lowvisor import Lowvisor
from el2.stage2 import PagePool, Stage2Tables
from el2.vmid import VmidAllocator
from gic.v2_hyp import GichV2
from host_kernel.memslots import MemSlot, MemSlots
from host_kernel.mmio import MmioBus
from host_kernel.vcpu import Vcpu

HOST_PT_BASE = 0x80_0000_0000        # host-private page-table memory: beyond every guest IPA
HOST_PT_SIZE = 0x100_0000
HOST_RAM_BASE = 0x10_0000_0000       # backing of guest RAM: mapped for a guest only by stage 2
HOST_RAM_STRIDE = 0x4_0000_0000      # one 16 GiB window per VM


@dataclass(frozen=True)
class Clocking:
    cpu_hz: int
    cntfrq_hz: int
    cpi: int


class Host:
    def __init__(self, costs: Mapping[str, int], clocking: Clocking, npcpus: int = 1,
                 nr_lr: int = 4, trace: Tracer = NULL):
        from math import gcd
        g = gcd(clocking.cntfrq_hz, clocking.cpu_hz)
        self.costs, self.clocking, self.trace, self.nr_lr = costs, clocking, trace, nr_lr
        self.pcpus: list[PhysicalCpu] = []
        self.lowvisors: list[Lowvisor] = []
        for i in range(npcpus):
            cpu = PhysicalCpu(i, cpi=clocking.cpi, cnt_mul=clocking.cntfrq_hz // g,
                              cnt_div=clocking.cpu_hz // g, cntfrq=clocking.cntfrq_hz)
            cpu.guest_exception_cost = costs["exc_entry_el1"]
            self.pcpus.append(cpu)
            self.lowvisors.append(Lowvisor(cpu, Ledger(cpu, costs), GichV2(nr_lr)))
        first = self.pcpus[0]
        self.pt_buf = first.map_memory(HOST_PT_BASE, HOST_PT_SIZE)
        for cpu in self.pcpus[1:]:
            cpu.map_shared(HOST_PT_BASE, self.pt_buf)
        self.pool = PagePool(self.pt_buf, HOST_PT_BASE)
        self.vmids = VmidAllocator()
        b1, b2 = el1_bank(), fp_bank()     # architectural reset values, read once from a fresh core
        b1.read(first.uch)
        b2.read(first.uch)
        self.el1_reset, self.fp_reset = b1.values(), b2.values()
        self.vms: list[Vm] = []

    def create_vm(self, name: str = "vm0") -> "Vm":
        vm = Vm(self, name, len(self.vms))
        self.vms.append(vm)
        return vm


class Vm:
    def __init__(self, host: Host, name: str, index: int):
        self.host, self.name, self.index = host, name, index
        self.trace = host.trace
        self.vmid = host.vmids.alloc()
        self.stage2 = Stage2Tables(host.pool, self.vmid)
        self.memslots = MemSlots()
        self.kernel_bus = MmioBus("in-kernel")
        self.vcpus: list[Vcpu] = []
        self.counters: Counter = Counter()
        self.guest_errors: list[str] = []

    def add_ram(self, ipa: int, size: int):
        """KVM_SET_USER_MEMORY_REGION: back [ipa, ipa+size) with host memory on every pCPU.
        Nothing is mapped at stage 2 yet: pages fault in on first touch."""
        host_pa = HOST_RAM_BASE + self.index * HOST_RAM_STRIDE
        if size > HOST_RAM_STRIDE:
            raise ValueError(f"RAM size {size:#x} exceeds the {HOST_RAM_STRIDE:#x} per-VM window")
        buf = self.host.pcpus[0].map_memory(host_pa, size)
        for cpu in self.host.pcpus[1:]:
            cpu.map_shared(host_pa, buf)
        slot = MemSlot(ipa, size, host_pa, buf)
        self.memslots.add(slot)
        return slot

    def create_vcpu(self, mpidr: int, pcpu: int = 0) -> Vcpu:
        v = Vcpu(self, len(self.vcpus), mpidr, self.host.lowvisors[pcpu], self.host.nr_lr)
        self.vcpus.append(v)
        return v
