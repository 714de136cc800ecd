"""The C fast path's sources and their identity: the build embeds SOURCE_ID in the
extension, and engine.fastpath refuses an extension built from other sources."""
import zlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = b"armvirt-fastpath-source:"


def read(name: str) -> str:
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def source_id() -> str:
    """CRC-32 of fastpath.h and fastpath.c as they are now (8 hex digits; it tells
    versions apart, it is no signature)."""
    crc = 0
    for name in ("fastpath.h", "fastpath.c"):
        crc = zlib.crc32(read(name).encode(), crc)
    return f"{crc:08x}"


def embedded_id(path: str) -> str | None:
    """The source id a built extension carries, or None if it carries none."""
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(MARKER)
    if at < 0:
        return None
    at += len(MARKER)
    return data[at:at + 8].decode("ascii", "replace")
