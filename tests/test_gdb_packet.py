"""The RSP packet layer: framing, checksums, escapes, run-length encoding, the
decoder's acks, naks, interrupts and bad packets."""
import pytest

from armvirt.gdbstub import packet as P


def decode(raw: bytes, chunk: int = 0):
    r = P.PacketReader()
    if not chunk:
        return r.feed(raw)
    out = []
    for i in range(0, len(raw), chunk):
        out += r.feed(raw[i:i + chunk])
    return out


@pytest.mark.parametrize("data,want", [
    (b"", "$#00"),
    (b"OK", "$OK#9a"),                    # 'O' 0x4f + 'K' 0x4b = 0x9a
    (b"qSupported", "$qSupported#37"),
    (b"g", "$g#67"),
])
def test_frame_and_checksum(data, want):
    got = P.frame(data).decode()
    assert got == want, f"frame({data!r}): expected {want}, observed {got}"


@pytest.mark.parametrize("raw,want", [
    (b"#", b"}\x03"), (b"$", b"}\x04"), (b"}", b"}]"), (b"*", b"}\x0a"), (b"a#b", b"a}\x03b"),
])
def test_escape(raw, want):
    assert P.escape(raw) == want, f"escape({raw!r}): expected {want!r}, observed {P.escape(raw)!r}"


@pytest.mark.parametrize("data", [b"0000", b"000", b"0" * 7, b"0" * 8, b"zzzzzz", b"f" * 99, b"0" * 500 + b"12",
                                  b"}]0000"])
def test_rle_encoding_round_trips(data):
    enc = P.rle_encode(data)
    assert b"#" not in enc and b"$" not in enc, f"{enc!r} uses a forbidden count"
    raw = b"$" + enc + b"#" + b"%02x" % P.checksum(enc)
    want = data.replace(b"}]", b"}")          # a packet body: } escapes the next byte
    ev = decode(raw)
    assert ev == [P.Event("packet", want)], f"rle_encode({data!r}) = {enc!r} decodes to {ev}"
    assert len(enc) <= len(data), f"encoding {data!r} grew it to {enc!r}"


def test_rle_known_encodings():
    assert P.rle_encode(b"0000") == b"0* ", P.rle_encode(b"0000")
    assert P.rle_encode(b"00000") == b"0*!", P.rle_encode(b"00000")
    assert P.rle_encode(b"0" * 7) == b"0*\"0", P.rle_encode(b"0" * 7)    # count 6 is '#': 5 and a literal


def test_decoder_rle_and_escape():
    body = b"x}]y0* "
    ev = decode(b"$" + body + b"#" + b"%02x" % P.checksum(body))
    assert ev == [P.Event("packet", b"x}y0000")], f"observed {ev}"


def test_decoder_acks_interrupt_noise_and_split_feeds():
    raw = b"+-\x03garbage$m1000,4#" + b"%02x" % P.checksum(b"m1000,4") + b"+"
    for chunk in (0, 1, 3):
        ev = decode(raw, chunk)
        kinds = [e.kind for e in ev]
        assert kinds == ["ack", "nak", "interrupt", "packet", "ack"], f"chunk {chunk}: observed {ev}"
        assert ev[3].data == b"m1000,4", ev[3]


def test_decoder_bad_checksum_and_abandoned_packet():
    ev = decode(b"$OK#00")
    assert ev == [P.Event("bad", b"OK")], f"a wrong checksum: expected a bad event, observed {ev}"
    ev = decode(b"$OK#zz")
    assert ev == [P.Event("bad", b"OK")], f"a non-hex checksum: observed {ev}"
    ev = decode(b"$abc$OK#9a")
    assert [e.kind for e in ev] == ["bad", "packet"] and ev[1].data == b"OK", f"observed {ev}"


def test_decoder_rejects_rle_without_a_character():
    ev = decode(b"$* #" + b"%02x" % P.checksum(b"* "))
    assert ev[0].kind == "bad", f"a run with nothing to repeat must be refused, observed {ev}"
