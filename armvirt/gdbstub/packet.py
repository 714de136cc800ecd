"""GDB Remote Serial Protocol framing (GDB manual, "Remote Protocol: Overview"):
`$data#cs` packets with a modulo-256 checksum in two hex digits, `+`/`-`
acknowledgements, `}` escapes (the next byte XOR 0x20), run-length encoding
(`c*n`: n - 29 more copies of c) and the 0x03 interrupt byte."""
from __future__ import annotations

from dataclasses import dataclass

INTERRUPT = 0x03
ESCAPE = ord("}")
RLE = ord("*")
_MUST_ESCAPE = frozenset(b"#$}*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# A repeat count is a printable character n (n - 29 copies); '#' and '$' may not be used.
_RLE_MIN, _RLE_MAX, _RLE_FORBIDDEN = 3, 126 - 29, (ord("#") - 29, ord("$") - 29)


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data in a packet ('X', 'qXfer' replies): # $ } * become } and c ^ 0x20."""
    out = bytearray()
    for b in data:
        if b in _MUST_ESCAPE:
            out += bytes((ESCAPE, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def _run_length(n: int) -> int:
    """How many extra copies to fold into one `c*n` (n counts the copies after c)."""
    k = min(n, _RLE_MAX)
    while k in _RLE_FORBIDDEN:
        k -= 1
    return k


def rle_encode(data: bytes) -> bytes:
    """Run-length encode runs of a hex digit (register and memory dumps are mostly
    zeros); nothing else, so escapes and binary data are never touched."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        j = i
        while j < n and data[j] == c:
            j += 1
        run = j - i
        if c in _HEX:
            while run > _RLE_MIN:               # c*n is 3 bytes: worth it from 4 copies on
                k = _run_length(run - 1)
                out += bytes((c, RLE, k + 29))
                run -= 1 + k
        out += bytes([c]) * run
        i = j
    return bytes(out)


def frame(data: bytes, rle: bool = False) -> bytes:
    body = rle_encode(data) if rle else data
    return b"$" + body + b"#" + b"%02x" % checksum(body)


@dataclass(frozen=True)
class Event:
    """What the reader found in the byte stream."""
    kind: str               # "packet", "bad" (checksum or framing), "ack", "nak", "interrupt"
    data: bytes = b""


class PacketReader:
    """Incremental decoder: feed bytes as they arrive, take the events."""

    def __init__(self):
        self._state = "idle"
        self._buf = bytearray()
        self._sum = 0
        self._cs = ""

    def feed(self, chunk: bytes) -> list[Event]:
        events = []
        for b in chunk:
            ev = self._byte(b)
            if ev is not None:
                events.append(ev)
        return events

    def _byte(self, b: int) -> Event | None:
        st = self._state
        if st == "idle":
            if b == ord("$"):
                self._state, self._buf, self._sum = "data", bytearray(), 0
            elif b == ord("+"):
                return Event("ack")
            elif b == ord("-"):
                return Event("nak")
            elif b == INTERRUPT:
                return Event("interrupt")
            return None                         # noise between packets is ignored, as GDB does
        if st == "checksum":
            self._cs += chr(b)
            if len(self._cs) < 2:
                return None
            self._state = "idle"
            try:
                ok = int(self._cs, 16) == self._sum & 0xFF
            except ValueError:
                ok = False
            return Event("packet", bytes(self._buf)) if ok else Event("bad", bytes(self._buf))
        if b == ord("#"):
            self._state, self._cs = "checksum", ""
            return None
        if b == ord("$"):                       # a new packet abandons the unfinished one
            self._state, self._buf, self._sum = "data", bytearray(), 0
            return Event("bad")
        self._sum += b
        if st == "escape":
            self._buf.append(b ^ 0x20)
            self._state = "data"
        elif st == "rle":
            self._state = "data"
            count = b - 29
            if not self._buf or not _RLE_MIN <= count <= _RLE_MAX:
                self._state = "idle"
                return Event("bad", bytes(self._buf))
            self._buf += bytes([self._buf[-1]]) * count
        elif b == ESCAPE:
            self._state = "escape"
        elif b == RLE:
            self._state = "rle"
        else:
            self._buf.append(b)
        return None
