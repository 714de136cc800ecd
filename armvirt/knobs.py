"""The run-time knobs of the bundled benchmark images: 32-bit words in `.data` that a
harness sets in a copy of the ELF instead of rebuilding it (images/README.md):
compute.elf and compute-tick.elf's `compute_rounds`, hvc-storm.elf's `storm_calls`."""
from __future__ import annotations

import os
import struct

from elftools.elf.elffile import ELFFile

KNOBS = {"compute.elf": "compute_rounds", "compute-tick.elf": "compute_rounds",
         "hvc-storm.elf": "storm_calls"}


def patched(src: str, value: int, outdir: str, symbol: str | None = None) -> str:
    """A copy of the ELF `src` in `outdir` with its knob (KNOBS by file name, or `symbol`)
    set to `value`; the path of the copy."""
    name = os.path.basename(src)
    symbol = symbol or KNOBS[name]
    with open(src, "rb") as f:
        data = bytearray(f.read())
        elf = ELFFile(f)
        addr = elf.get_section_by_name(".symtab").get_symbol_by_name(symbol)[0]["st_value"]
        # the word's file offset: it lies in a loaded segment's file image (.data, not .bss)
        off = next(s["p_offset"] + addr - s["p_vaddr"] for s in elf.iter_segments()
                   if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= addr < s["p_vaddr"] + s["p_filesz"])
    struct.pack_into("<I", data, off, value)
    path = os.path.join(outdir, f"{name[:-4]}-{symbol}-{value}.elf")
    with open(path, "wb") as f:
        f.write(data)
    return path
