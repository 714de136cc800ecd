"""A bare host with one VM and one vCPU for layer tests: assemble a few
instructions into guest RAM and let the lowvisor return the raw exits."""
from __future__ import annotations

import struct

from armvirt import profile
from engine import layout
from engine import aarch64
from host_kernel.kvm import Clocking, Host
from host_kernel.vcpu import BootState

ENTRY = layout.RAM_BASE + 0x1000


class Harness:
    def __init__(self, code: list[int], ram_size: int = 16 << 20, thp: bool = True):
        p = profile.load("xgene")
        self.host = Host(p.costs, Clocking(p.cpu_hz, p.cntfrq_hz, p.cpi))
        self.vm = self.host.create_vm()
        self.slot = self.vm.add_ram(layout.RAM_BASE, ram_size, thp=thp)
        self.vcpu = self.vm.create_vcpu(0)
        self.write(ENTRY, code)
        self.vcpu.reset(BootState(entry=ENTRY))
        self.lowvisor = self.vcpu.lowvisor
        self.ctx = self.vcpu.ctx

    def write(self, addr: int, words: list[int]) -> None:
        off = addr - layout.RAM_BASE
        self.slot.buf[off:off + 4 * len(words)] = b"".join(struct.pack("<I", w) for w in words)
        self.host.pcpus[0].flush_code(addr, addr + 4 * len(words))

    def next_exit(self, skip_stage2: bool = True):
        """Run until an exit that is not a first-touch RAM fault (those are mapped here)."""
        from host_kernel.mmu import handle_guest_abort
        from el2 import syndrome as syn
        while True:
            ex = self.lowvisor.run(self.ctx)
            if skip_stage2 and ex.ec in (syn.EC_IABT_LOW, syn.EC_DABT_LOW):
                ipa = syn.hpfar_to_ipa(ex.hpfar, ex.far)
                if self.vm.memslots.find(ipa):
                    handle_guest_abort(self.vcpu, ex)
                    continue
            return ex


# A64 encodings used by the tests (ARM ARM C6).
def hvc(imm):
    return 0xD4000002 | (imm << 5)


def smc(imm):
    return 0xD4000003 | (imm << 5)


WFI = 0xD503207F
NOP = 0xD503201F


def movz(rd, imm16, shift=0):
    return 0xD2800000 | (shift // 16) << 21 | imm16 << 5 | rd


def ldr_w(rt, rn, imm=0):      # LDR Wt, [Xn, #imm]
    return 0xB9400000 | (imm // 4) << 10 | rn << 5 | rt


def ldrsh_x(rt, rn):           # LDRSH Xt, [Xn]
    return 0x79800000 | rn << 5 | rt


def ldrb(rt, rn):              # LDRB Wt, [Xn]
    return 0x39400000 | rn << 5 | rt


def str_x(rt, rn):             # STR Xt, [Xn]
    return 0xF9000000 | rn << 5 | rt


def mrs(rt, op0, op1, crn, crm, op2):
    return 0xD5300000 | (op0 - 2) << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


def msr(rt, op0, op1, crn, crm, op2):
    return 0xD5100000 | (op0 - 2) << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | rt


EL1H_DAIF = aarch64.RESET_PSTATE
