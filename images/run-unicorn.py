#!/usr/bin/env python3
"""Run a guest image on bare Unicorn, the way the engine benchmark runs `compute`.

RAM (128 MiB at 0x40000000) and the UART page are plain memory (bytes written to
UART DR are collected and printed); the first CPU exception the image raises
(its PSCI SYSTEM_OFF `hvc`) stops the run.  No DTB: x0 = 0.

    python3 images/run-unicorn.py images/compute.elf [--rounds N] [--count]

--rounds patches the `compute_rounds` symbol; --count counts executed guest
instructions (block hook, exact for straight-line blocks).
"""
import argparse
import struct
import sys
import time

from unicorn import UC_ARCH_ARM64, UC_HOOK_BLOCK, UC_HOOK_INTR, UC_HOOK_MEM_WRITE, UC_MODE_ARM, Uc
from unicorn.arm64_const import UC_ARM64_REG_PC, UC_ARM64_REG_X0

RAM_BASE, RAM_SIZE = 0x4000_0000, 128 << 20
UART_BASE = 0x0900_0000


def load_elf(path):
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 0x12)[0] != 183:
        sys.exit(f"{path}: not an ELF64 AArch64 file")
    entry, phoff, shoff = struct.unpack_from("<QQQ", data, 0x18)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type == 1:  # PT_LOAD
            segments.append((paddr, data[off:off + filesz], memsz))
    symbols = {}
    shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for sh in shdrs:
        if sh[1] == 2:  # SHT_SYMTAB
            stroff = shdrs[sh[6]][4]
            for off in range(sh[4], sh[4] + sh[5], 24):
                name, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, off)
                end = data.index(b"\0", stroff + name)
                symbols[data[stroff + name:end].decode()] = value
    return entry, segments, symbols


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elf")
    ap.add_argument("--rounds", type=int, help="patch compute_rounds")
    ap.add_argument("--count", action="store_true", help="count guest instructions")
    args = ap.parse_args()

    entry, segments, symbols = load_elf(args.elf)
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    uc.mem_map(UART_BASE, 0x1000)
    for paddr, blob, _ in segments:
        uc.mem_write(paddr, blob)
    if args.rounds is not None:
        uc.mem_write(symbols["compute_rounds"], struct.pack("<I", args.rounds))

    out = bytearray()
    count = [0]
    stop = {}

    def on_uart(uc, access, addr, size, value, user):
        if addr == UART_BASE:
            out.append(value & 0xFF)

    def on_intr(uc, intno, user):
        stop["pc"] = uc.reg_read(UC_ARM64_REG_PC)
        stop["x0"] = uc.reg_read(UC_ARM64_REG_X0)
        stop["intno"] = intno
        uc.emu_stop()

    uc.hook_add(UC_HOOK_MEM_WRITE, on_uart, begin=UART_BASE, end=UART_BASE + 0xFFF)
    uc.hook_add(UC_HOOK_INTR, on_intr)
    if args.count:
        def on_block(uc, addr, size, user):
            count[0] += size // 4
        uc.hook_add(UC_HOOK_BLOCK, on_block)

    uc.reg_write(UC_ARM64_REG_X0, 0)
    t0 = time.monotonic()
    uc.emu_start(entry, 0)
    dt = time.monotonic() - t0
    sys.stdout.write(out.decode(errors="replace"))
    print(f"[unicorn] stopped by exception {stop.get('intno')} at pc=0x{stop.get('pc', 0):x} "
          f"x0=0x{stop.get('x0', 0):x} after {dt:.1f}s"
          + (f", {count[0]} instructions" if args.count else ""))


if __name__ == "__main__":
    main()
