"""The guest console: bytes from the UART to an output stream, kept line by
line so the run can read `EXIT: STATUS=n` and tests can assert on output."""
from __future__ import annotations

import re
import sys
from typing import TextIO

EXIT_RE = re.compile(r"^EXIT: STATUS=(-?\d+)\s*$")


class Console:
    def __init__(self, out: TextIO | None = None, echo: bool = True, prefix: str = ""):
        self.out = out or sys.stdout
        self.echo = echo
        self.prefix = prefix          # several VMs share a terminal: "[vm1] " before each line
        self.lines: list[str] = []
        self._partial = bytearray()
        self.exit_status: int | None = None

    def put(self, byte: int) -> None:
        if self.echo and not self.prefix:
            self.out.write(chr(byte))
            if byte == 0x0A:
                self.out.flush()
        if byte == 0x0A:
            line = self._partial.decode("latin-1").rstrip("\r")
            if self.echo and self.prefix:         # whole lines, or VMs interleave characters
                self.out.write(f"{self.prefix}{line}\n")
                self.out.flush()
            self._partial.clear()
            self.lines.append(line)
            m = EXIT_RE.match(line)
            if m:
                self.exit_status = int(m.group(1))
        elif byte != 0x0D:
            self._partial.append(byte)

    def flush(self) -> None:
        if self._partial:
            self.lines.append(self._partial.decode("latin-1"))
            if self.echo:                     # a stopped guest may leave a line open
                self.out.write(f"{self.prefix}{self.lines[-1]}\n" if self.prefix else "\n")
            self._partial.clear()
        if self.echo:
            self.out.flush()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
