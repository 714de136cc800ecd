"""The core's own exception record: syndrome, fault address and target EL.

Unicorn never writes ESR_ELx/FAR_ELx and reports a synchronous exception to
the INTR hook with an exception number only.  The syndrome QEMU computed
(architecturally: ISV/SAS/SRT for stage-2 data aborts, DFSC, IL, ...) lives in
CPUARMState.exception {u32 syndrome, u32 fsr, u64 vaddress, u32 target_el}.
We read it from a saved uc_context blob at an offset found at start-up by
provoking a known HVC (unicorn-facts.md); this is a private layout of one
Unicorn build, so the version is pinned and the calibration fails loudly.
"""
from __future__ import annotations

import ctypes
import struct

import unicorn
from unicorn.arm64_const import UC_ARM64_REG_CP_REG, UC_ARM64_REG_PC
from unicorn.unicorn_py3 import unicorn as _ucmod

from engine.sysreg import HCR_EL2, SCR_EL3

UC = _ucmod.uclib
PINNED_UNICORN = "2.1.4"
_PROBE_ADDR = 0x1000
_PROBE_IMM = 0x5A5A
_PROBE_SYNDROME = (0x16 << 26) | (1 << 25) | _PROBE_IMM   # ESR for HVC #imm, ARM ARM D17.2.37


class _Rec(ctypes.Structure):
    _fields_ = [("syndrome", ctypes.c_uint32), ("fsr", ctypes.c_uint32),
                ("vaddress", ctypes.c_uint64), ("target_el", ctypes.c_uint32)]


class EngineMismatch(RuntimeError):
    """The Unicorn build does not have the layout armvirt was calibrated for."""


_offset: int | None = None
_excl_offset: int | None = None
_PROBE_DATA = 0x2468               # LDXR's address in the monitor probe (8-byte aligned)
LDXR_X1_X0, CLREX, NO_RESERVATION = 0xC85F7C01, 0xD503305F, 2**64 - 1


def _calibrate() -> int:
    if unicorn.__version__ != PINNED_UNICORN:
        raise EngineMismatch(f"armvirt is calibrated for unicorn {PINNED_UNICORN}, found {unicorn.__version__}")
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
    uc.reg_write(UC_ARM64_REG_CP_REG, SCR_EL3.uc + (0x501,))
    uc.reg_write(UC_ARM64_REG_CP_REG, HCR_EL2.uc + (1 << 31,))
    uc.mem_map(_PROBE_ADDR, 0x1000)
    uc.mem_write(_PROBE_ADDR, struct.pack("<I", 0xD4000002 | (_PROBE_IMM << 5)))
    uc.hook_add(unicorn.UC_HOOK_INTR, lambda u, n, d: u.emu_stop())
    uc.emu_start(_PROBE_ADDR, _PROBE_ADDR + 0x800, count=1)
    ctx = uc.context_save()
    size = UC.uc_context_size(uc._uch)
    blob = ctypes.string_at(ctypes.cast(ctx.context, ctypes.c_void_p).value, size + 64)
    pattern = struct.pack("<I", _PROBE_SYNDROME)
    off = blob.find(pattern)
    while off >= 0:
        syn, _fsr, va, tel = struct.unpack_from("<IIQI", blob, off)
        if tel == 2 and uc.reg_read(UC_ARM64_REG_PC) == _PROBE_ADDR + 4:
            return off
        off = blob.find(pattern, off + 4)
    raise EngineMismatch("cannot find the exception record in the Unicorn context")


def _context_blob(uc: unicorn.Uc) -> bytes:
    ctx = uc.context_save()
    return ctypes.string_at(ctypes.cast(ctx.context, ctypes.c_void_p).value, UC.uc_context_size(uc._uch))


def _calibrate_monitor() -> int:
    """The offset of the local exclusive monitor's address (QEMU env->exclusive_addr, -1
    when no reservation is open) in the same blob: after an LDXR it holds the address,
    after a CLREX -1 (ARM ARM B2.9: ClearExclusiveLocal)."""
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
    uc.mem_map(_PROBE_ADDR, 0x2000)
    uc.mem_write(_PROBE_ADDR, struct.pack("<II", LDXR_X1_X0, CLREX))
    uc.reg_write(unicorn.arm64_const.UC_ARM64_REG_X0, _PROBE_DATA)
    uc.emu_start(_PROBE_ADDR, _PROBE_ADDR + 8, count=1)
    held = _context_blob(uc)
    uc.emu_start(_PROBE_ADDR + 4, _PROBE_ADDR + 8, count=1)
    cleared = _context_blob(uc)
    found = [off for off in range(0, len(held) - 7, 8)
             if struct.unpack_from("<Q", held, off)[0] == _PROBE_DATA
             and struct.unpack_from("<Q", cleared, off)[0] == NO_RESERVATION]
    if len(found) != 1:
        raise EngineMismatch(f"cannot find the exclusive monitor in the Unicorn context ({len(found)} candidates)")
    return found[0]


def offsets() -> tuple[int, int]:
    """(exception record, exclusive monitor address) offsets in a uc_context, calibrated once."""
    global _offset, _excl_offset
    if _offset is None:
        _offset = _calibrate()
    if _excl_offset is None:
        _excl_offset = _calibrate_monitor()
    return _offset, _excl_offset


class ExceptionRecord:
    """The core's exception record of one engine instance: a uc_context the fast path's
    INTR hook saves into (engine/fastpath.c av_intr_hook), and read() for Python (~1 us)."""

    def __init__(self, uc: unicorn.Uc):
        offsets()
        self._uch = uc._uch
        self._ctx = uc.context_save()
        self._ctxp = self._ctx.context
        self.address = ctypes.cast(self._ctxp, ctypes.c_void_p).value
        self._rec = _Rec.from_address(self.address + _offset)

    def read(self) -> tuple[int, int, int]:
        """(syndrome, vaddress, target_el) of the exception being reported."""
        UC.uc_context_save(self._uch, self._ctxp)
        r = self._rec
        return r.syndrome, r.vaddress, r.target_el
