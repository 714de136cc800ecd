"""The aarch64 registers as GDB numbers them (target descriptions
org.gnu.gdb.aarch64.core and org.gnu.gdb.aarch64.fpu, as QEMU's gdbstub sends
them), and where a vCPU's registers are: in its pCPU's engine while it is loaded
there, in its saved context otherwise."""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import arm64_const as A

from engine import aarch64
from engine import sysreg as S


@dataclass(frozen=True)
class Reg:
    name: str
    bits: int
    feature: str            # "core" or "fpu"
    type: str = ""


CORE = tuple(Reg(f"x{i}", 64, "core") for i in range(31)) + (
    Reg("sp", 64, "core", "data_ptr"), Reg("pc", 64, "core", "code_ptr"), Reg("cpsr", 32, "core", "cpsr_flags"))
FPU = tuple(Reg(f"v{i}", 128, "fpu", "aarch64v") for i in range(32)) + (
    Reg("fpsr", 32, "fpu"), Reg("fpcr", 32, "fpu"))
REGISTERS = CORE + FPU
REGNUM = {r.name: i for i, r in enumerate(REGISTERS)}
G_REGISTERS = CORE          # the 'g' packet carries the core feature, as QEMU's does

# --- target description (GDB manual, "Target Descriptions"; gdb/features/aarch64-*.xml) ---
_CPSR_FLAGS = (("SP", 0, 0), ("EL", 2, 3), ("nRW", 4, 4), ("F", 6, 6), ("I", 7, 7), ("A", 8, 8),
               ("D", 9, 9), ("BTYPE", 10, 11), ("SSBS", 12, 12), ("IL", 20, 20), ("SS", 21, 21),
               ("PAN", 22, 22), ("UAO", 23, 23), ("DIT", 24, 24), ("TCO", 25, 25),
               ("V", 28, 28), ("C", 29, 29), ("Z", 30, 30), ("N", 31, 31))
_VECTORS = (("v2d", "ieee_double", 2), ("v2u", "uint64", 2), ("v2i", "int64", 2),
            ("v4f", "ieee_single", 4), ("v4u", "uint32", 4), ("v4i", "int32", 4),
            ("v8u", "uint16", 8), ("v8i", "int16", 8), ("v16u", "uint8", 16), ("v16i", "int8", 16),
            ("v1u", "uint128", 1), ("v1i", "int128", 1))
_UNIONS = (("vnd", (("f", "v2d"), ("u", "v2u"), ("s", "v2i"))),
           ("vns", (("f", "v4f"), ("u", "v4u"), ("s", "v4i"))),
           ("vnh", (("u", "v8u"), ("s", "v8i"))), ("vnb", (("u", "v16u"), ("s", "v16i"))),
           ("vnq", (("u", "v1u"), ("s", "v1i"))),
           ("aarch64v", (("d", "vnd"), ("s", "vns"), ("h", "vnh"), ("b", "vnb"), ("q", "vnq"))))
FEATURES = {"core": ("aarch64-core.xml", "org.gnu.gdb.aarch64.core"),
            "fpu": ("aarch64-fpu.xml", "org.gnu.gdb.aarch64.fpu")}
_HEAD = '<?xml version="1.0"?>'


def _reg_xml(r: Reg) -> str:
    t = f' type="{r.type}"' if r.type else ""
    return f'<reg name="{r.name}" bitsize="{r.bits}" regnum="{REGNUM[r.name]}"{t}/>'


def _types_xml(feature: str) -> str:
    if feature == "core":
        fields = "".join(f'<field name="{n}" start="{a}" end="{b}"/>' for n, a, b in _CPSR_FLAGS)
        return f'<flags id="cpsr_flags" size="4">{fields}</flags>'
    vecs = "".join(f'<vector id="{i}" type="{t}" count="{n}"/>' for i, t, n in _VECTORS)
    unions = "".join(f'<union id="{u}">' + "".join(f'<field name="{n}" type="{t}"/>' for n, t in fs)
                     + "</union>" for u, fs in _UNIONS)
    return vecs + unions


def feature_xml(feature: str) -> str:
    _, name = FEATURES[feature]
    regs = "".join(_reg_xml(r) for r in REGISTERS if r.feature == feature)
    return (f'{_HEAD}<!DOCTYPE feature SYSTEM "gdb-target.dtd"><feature name="{name}">'
            f'{_types_xml(feature)}{regs}</feature>')


def target_xml() -> str:
    includes = "".join(f'<xi:include href="{f}"/>' for f, _ in FEATURES.values())
    return (f'{_HEAD}<!DOCTYPE target SYSTEM "gdb-target.dtd"><target xmlns:xi="http://www.w3.org/2001/XInclude">'
            f'<architecture>aarch64</architecture>{includes}</target>')


def annexes() -> dict[str, str]:
    """qXfer:features:read annexes."""
    return {"target.xml": target_xml(), **{f: feature_xml(k) for k, (f, _) in FEATURES.items()}}


# --- values on the wire: little-endian, as many bytes as the register has ---
def to_hex(reg: Reg, value: int) -> str:
    return (value & ((1 << reg.bits) - 1)).to_bytes(reg.bits // 8, "little").hex()


def from_hex(reg: Reg, text: str) -> int:
    raw = bytes.fromhex(text)
    if len(raw) != reg.bits // 8:
        raise ValueError(f"{reg.name}: {len(raw)} bytes, expected {reg.bits // 8}")
    return int.from_bytes(raw, "little")


# --- where the values are ---
_X_IDS = [A.UC_ARM64_REG_X0 + i for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
_ENGINE_IDS = {**{f"x{i}": uid for i, uid in enumerate(_X_IDS)},
               "sp": A.UC_ARM64_REG_SP, "pc": A.UC_ARM64_REG_PC, "cpsr": A.UC_ARM64_REG_PSTATE,
               **{f"v{i}": A.UC_ARM64_REG_Q0 + i for i in range(32)},
               "fpsr": A.UC_ARM64_REG_FPSR, "fpcr": A.UC_ARM64_REG_FPCR}


class EngineState:
    """A vCPU loaded in its pCPU's engine (running, or halted in the middle of a turn).
    The live stack pointer is X31 there (unicorn-facts.md)."""

    def __init__(self, cpu):
        self.cpu = cpu

    def get(self, name: str) -> int:
        return self.cpu.uc.reg_read(_ENGINE_IDS[name])

    def set(self, name: str, value: int) -> None:
        self.cpu.uc.reg_write(_ENGINE_IDS[name], value)
        if name == "cpsr":
            # A PSTATE write takes effect for privilege checks only once a CP_REG write
            # rebuilds the core's cached flags (unicorn-facts.md).
            self.cpu.write_sysreg(S.SPSR_EL1, self.cpu.read_sysreg(S.SPSR_EL1))

    def sysreg(self, reg: S.SysReg) -> int:
        return self.cpu.read_sysreg(reg)


class ContextState:
    """A vCPU whose state is saved in its VcpuContext (el2/context.py)."""
    _FP = {**{f"v{i}": f"q{i}" for i in range(32)}, "fpsr": "FPSR", "fpcr": "FPCR"}

    def __init__(self, ctx):
        self.ctx = ctx

    def _slot(self, name: str) -> tuple:
        gp, fp = self.ctx.gp, self.ctx.fp
        if name == "sp":              # the saved SP of the vCPU's current mode (D1.6.2)
            el1h = self.ctx.pstate & 0b1101 == aarch64.PSR_MODE_EL1h   # EL1 with SPSel = 1
            return gp, "SP_EL1" if el1h else "SP_EL0"
        if name in self._FP:
            return fp, self._FP[name]
        return gp, {"cpsr": "pstate"}.get(name, name)

    def get(self, name: str) -> int:
        bank, key = self._slot(name)
        return bank.get(key)

    def set(self, name: str, value: int) -> None:
        bank, key = self._slot(name)
        bank.set(key, value)

    def sysreg(self, reg: S.SysReg) -> int:
        return self.ctx.el1.get(reg.name)


def read_all(state, regs=G_REGISTERS) -> str:
    return "".join(to_hex(r, state.get(r.name)) for r in regs)


def write_all(state, text: str, regs=G_REGISTERS) -> None:
    """A 'G' packet: whole registers in 'g' order (GDB may send fewer than there are)."""
    values, pos = [], 0
    for r in regs:
        n = r.bits // 4
        if pos + n > len(text):
            break
        values.append((r, from_hex(r, text[pos:pos + n])))
        pos += n
    if pos != len(text):
        raise ValueError(f"G: {len(text) - pos} hex digits after the last whole register")
    for r, v in values:
        state.set(r.name, v)
