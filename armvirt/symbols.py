"""Guest symbols from an ELF image's .symtab, for logs that name code (-d in_asm,
exec) as QEMU's lookup_symbol does: the function or label an address falls in."""
from __future__ import annotations

import bisect

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

_KINDS = ("STT_FUNC", "STT_NOTYPE", "STT_OBJECT")


class Symbols:
    def __init__(self, entries: list[tuple[int, int, str]]):
        self._entries = sorted(entries)                # (address, size, name)
        self._starts = [e[0] for e in self._entries]

    @classmethod
    def from_elf(cls, path: str) -> "Symbols":
        """Empty for anything that is not an ELF with a symbol table (an arm64 Image)."""
        entries = []
        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                for sec in elf.iter_sections():
                    if not isinstance(sec, SymbolTableSection):
                        continue
                    for s in sec.iter_symbols():
                        # $x/$d are the AAELF64 mapping symbols, not names
                        if s.name and not s.name.startswith("$") and s["st_info"]["type"] in _KINDS \
                                and s["st_shndx"] != "SHN_UNDEF":
                            entries.append((s["st_value"], s["st_size"], s.name))
        except (OSError, ELFError):
            pass
        return cls(entries)

    def __call__(self, pc: int) -> str:
        """The symbol whose [address, address + size) holds `pc` (a size-0 label: its address)."""
        i = bisect.bisect_right(self._starts, pc) - 1
        while i >= 0:
            addr, size, name = self._entries[i]
            if pc == addr or addr <= pc < addr + size:
                return name
            if addr < pc and size:       # the nearest sized symbol below does not reach pc
                return ""
            i -= 1
        return ""
