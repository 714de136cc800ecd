"""Helpers for the GDB stub tests: symbols from the guest ELFs, free ports, a
minimal RSP client, and gdb-multiarch (a missing one fails in CI, skips elsewhere)."""
from __future__ import annotations

import os
import shutil
import socket
import struct

import pytest
from elftools.elf.elffile import ELFFile

from armvirt.gdbstub import packet


def symbol(elf_path: str, name: str) -> int:
    with open(elf_path, "rb") as f:
        s = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        assert s, f"{name} not in {elf_path}"
        return s[0]["st_value"]


def text_words(elf_path: str):
    """(address, instruction word) of every word in .text."""
    with open(elf_path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".text")
        data, base = sec.data(), sec["sh_addr"]
    return [(base + i, struct.unpack_from("<I", data, i)[0]) for i in range(0, len(data) - 3, 4)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gdb_multiarch() -> str:
    path = shutil.which("gdb-multiarch")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gdb-multiarch is not installed (apt-get install gdb-multiarch)", pytrace=False)
        pytest.skip("gdb-multiarch is not installed")
    return path


class RspClient:
    """Just enough of GDB's side of the protocol to drive the stub from a test."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = packet.PacketReader()
        self.events = []
        self.acks = True

    def _next(self):
        while not self.events:
            data = self.sock.recv(65536)
            assert data, "the stub closed the connection"
            self.events += self.reader.feed(data)
        return self.events.pop(0)

    def reply(self) -> bytes:
        while True:
            ev = self._next()
            if ev.kind == "packet":
                if self.acks:
                    self.sock.sendall(b"+")
                return ev.data
            assert ev.kind in ("ack",), f"unexpected {ev}"

    def send(self, text: str | bytes) -> None:
        data = text.encode("latin-1") if isinstance(text, str) else text
        self.sock.sendall(packet.frame(data))
        if self.acks:
            ev = self._next()
            assert ev.kind == "ack", f"expected an ack, got {ev}"

    def ask(self, text: str | bytes) -> str:
        self.send(text)
        return self.reply().decode("latin-1")

    def interrupt(self) -> None:
        self.sock.sendall(bytes([packet.INTERRUPT]))

    def close(self) -> None:
        self.sock.close()
