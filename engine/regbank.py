"""A declared list of engine registers moved with one raw batch call.

The Python binding costs microseconds per register; uc_reg_read_batch over
prebuilt pointer arrays moves ~90 registers in about a microsecond
(unicorn-facts.md).  A bank *is* the storage: a vCPU context keeps its
registers in banks, so a world switch is one raw call per bank.
"""
from __future__ import annotations

import ctypes
from typing import Iterable, Union

from unicorn.arm64_const import UC_ARM64_REG_CP_REG
from unicorn.unicorn_py3 import unicorn as _ucmod

from engine.sysreg import SysReg

UC = _ucmod.uclib


class CpReg(ctypes.Structure):
    _fields_ = [("crn", ctypes.c_uint32), ("crm", ctypes.c_uint32), ("op0", ctypes.c_uint32),
                ("op1", ctypes.c_uint32), ("op2", ctypes.c_uint32), ("val", ctypes.c_uint64)]


class EngineError(RuntimeError):
    """The engine refused a register access (a bug in armvirt, never the guest's fault)."""


Spec = Union[int, tuple[str, int], SysReg]   # UC register id, ("q", id) for 128-bit, or a SysReg


class RegBank:
    def __init__(self, names: Iterable[str], specs: Iterable[Spec]):
        self.names = tuple(names)
        specs = tuple(specs)
        assert len(specs) == len(self.names)
        n = len(specs)
        self.n = n
        self._ids = (ctypes.c_int * n)()
        self._ptrs = (ctypes.c_void_p * n)()
        self._plain = (ctypes.c_uint64 * (2 * n))()
        self._cps = (CpReg * n)()
        self._kind = []            # per entry: ("x", slot) | ("q", slot) | ("cp", index)
        base = ctypes.addressof(self._plain)
        for i, s in enumerate(specs):
            if isinstance(s, SysReg):
                c = self._cps[i]
                c.crn, c.crm, c.op0, c.op1, c.op2 = s.uc
                self._ids[i] = UC_ARM64_REG_CP_REG
                self._ptrs[i] = ctypes.addressof(c)
                self._kind.append(("cp", i))
            else:
                wide = isinstance(s, tuple)
                self._ids[i] = s[1] if wide else s
                self._ptrs[i] = base + 16 * i
                self._kind.append(("q" if wide else "x", 2 * i))
        self.index = {name: i for i, name in enumerate(self.names)}

    def read(self, uch) -> None:
        """Engine -> bank."""
        if UC.uc_reg_read_batch(uch, self._ids, self._ptrs, self.n):
            raise EngineError(f"batch read of {self.names} failed")

    def write(self, uch) -> None:
        """Bank -> engine."""
        if UC.uc_reg_write_batch(uch, self._ids, self._ptrs, self.n):
            raise EngineError(f"batch write of {self.names} failed")

    def __getitem__(self, i: int) -> int:
        kind, slot = self._kind[i]
        if kind == "cp":
            return self._cps[slot].val
        if kind == "q":
            return self._plain[slot] | (self._plain[slot + 1] << 64)
        return self._plain[slot]

    def __setitem__(self, i: int, value: int) -> None:
        kind, slot = self._kind[i]
        if kind == "cp":
            self._cps[slot].val = value & (2**64 - 1)
        elif kind == "q":
            self._plain[slot] = value & (2**64 - 1)
            self._plain[slot + 1] = (value >> 64) & (2**64 - 1)
        else:
            self._plain[slot] = value & (2**64 - 1)

    def get(self, name: str) -> int:
        return self[self.index[name]]

    def set(self, name: str, value: int) -> None:
        self[self.index[name]] = value

    def values(self) -> list[int]:
        return [self[i] for i in range(self.n)]

    def snapshot(self) -> bytes:
        """The bank's storage as bytes: equal snapshots are equal values (a set masks
        every value to its width), one C copy instead of a Python read per register."""
        return bytes(self._plain) + bytes(self._cps)

    def load(self, values: Iterable[int]) -> None:
        for i, v in enumerate(values):
            self[i] = v

    def __len__(self) -> int:
        return self.n


class BankSet:
    """Several banks moved by one raw batch call (in the order given: write order matters,
    e.g. a bank whose last entry is a CP_REG write goes last)."""

    def __init__(self, *banks: RegBank):
        self.banks = banks
        n = sum(b.n for b in banks)
        self.n = n
        self._ids = (ctypes.c_int * n)(*[i for b in banks for i in b._ids])
        self._ptrs = (ctypes.c_void_p * n)(*[p for b in banks for p in b._ptrs])

    def read(self, uch) -> None:
        if UC.uc_reg_read_batch(uch, self._ids, self._ptrs, self.n):
            raise EngineError("batch read failed")

    def write(self, uch) -> None:
        if UC.uc_reg_write_batch(uch, self._ids, self._ptrs, self.n):
            raise EngineError("batch write failed")
