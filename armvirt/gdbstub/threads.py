"""GDB's processes and threads on armvirt: one process per VM (QEMU's multiprocess
extension; only the first VM is attached until GDB attaches another), one thread
per vCPU, numbered from 1 as QEMU numbers CPUs (thread 0 means "any")."""
from __future__ import annotations

from dataclasses import dataclass

from armvirt.gdbstub.regs import ContextState, EngineState

ALL = -1
ANY = 0


@dataclass
class Process:
    vm: object
    pid: int
    attached: bool = False


class Threads:
    def __init__(self, vms: list):
        self.processes = [Process(vm, i + 1) for i, vm in enumerate(vms)]
        self.host = vms[0].host
        self.multiprocess = False
        self.reset_attach()

    def reset_attach(self) -> None:
        """A new connection: the first process attached, the others not (QEMU gdb_chr_event)."""
        for p in self.processes:
            p.attached = p.pid == 1

    # --- naming -----------------------------------------------------------------------------
    def process(self, pid: int) -> Process | None:
        if pid == ANY:
            return self.processes[0]
        return next((p for p in self.processes if p.pid == pid), None)

    def process_of(self, vcpu) -> Process:
        return next(p for p in self.processes if p.vm is vcpu.vm)

    def pid(self, vcpu) -> int:
        return self.process_of(vcpu).pid

    @staticmethod
    def tid(vcpu) -> int:
        return vcpu.index + 1

    def ident(self, vcpu) -> str:
        if self.multiprocess:
            return f"p{self.pid(vcpu):02x}.{self.tid(vcpu):02x}"
        return f"{self.tid(vcpu):02x}"

    @staticmethod
    def parse(text: str) -> tuple[int, int]:
        """A thread-id (GDB manual, "thread-id syntax"): `p<pid>.<tid>`, `<tid>`, -1 = all, 0 = any."""
        def num(t):
            return ALL if t == "-1" else int(t, 16)
        if text.startswith("p"):
            pid, _, tid = text[1:].partition(".")
            return num(pid), num(tid) if tid else ALL
        return ANY, num(text)

    def find(self, pid: int, tid: int):
        """The vCPU a thread-id names among attached processes (QEMU gdb_get_cpu), or None."""
        if pid in (ANY, ALL) and tid in (ANY, ALL):
            return next(iter(self.attached_vcpus()), None)
        if tid in (ANY, ALL):
            p = self.process(pid)
            return p.vm.vcpus[0] if p is not None and p.attached and p.vm.vcpus else None
        for p in self.processes:
            if p.attached and pid in (ANY, ALL, p.pid) and tid - 1 < len(p.vm.vcpus):
                return p.vm.vcpus[tid - 1]
        return None

    def attached_vcpus(self):
        for p in self.processes:
            if p.attached:
                yield from p.vm.vcpus

    def is_attached(self, vcpu) -> bool:
        return self.process_of(vcpu).attached

    # --- where things are -----------------------------------------------------------------------
    def running_on(self, cpu):
        """The vCPU the scheduler is running on this pCPU, if any."""
        for p in self.processes:
            v = p.vm.running
            if v is not None and v.cpu is cpu:
                return v
        return None

    @staticmethod
    def resident(vcpu) -> bool:
        """Its registers are in its pCPU's engine: it is running (the debugger halted it
        there), or its turn ended mid-guest and it is still loaded (host_kernel/vcpu.py)."""
        return vcpu.vm.running is vcpu or vcpu.paused

    def state(self, vcpu):
        return EngineState(vcpu.cpu) if self.resident(vcpu) else ContextState(vcpu.ctx)

    @staticmethod
    def extra_info(vcpu) -> str:
        """qThreadExtraInfo, in QEMU's words ("CPU#n [running]" / "[halted ]")."""
        halted = not vcpu.powered_on or vcpu.blocked_until is not None
        return f"CPU#{vcpu.index} [{'halted ' if halted else 'running'}]"
