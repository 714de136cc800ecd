"""Cost profiles: every value has a source; broken files are refused with a clear message."""
import pytest

from armvirt import profile


def test_shipped_profile_states_every_source():
    p = profile.load("xgene")
    missing = [k for k in profile.REQUIRED if not p.sources.get(k)]
    assert not missing, f"costs without a source: {missing}"
    assert p.cpu_hz // p.cntfrq_hz == 48, f"X-Gene: 2.4 GHz core, 50 MHz counter, got {p.cpu_hz}/{p.cntfrq_hz}"


def test_user_profile_needs_sources(tmp_path):
    src = open(profile.load("xgene").path).read()
    bad = tmp_path / "mine.toml"
    bad.write_text(src.replace('eret = { cycles = 65, source =', 'eret = { cycles = 65, nosource ='))
    with pytest.raises(profile.ProfileError, match="source"):
        profile.load(str(bad))


def test_user_profile_values_are_used(tmp_path):
    src = open(profile.load("xgene").path).read()
    mine = tmp_path / "fast-gic.toml"
    mine.write_text(src.replace("gich_mmio_read = { cycles = 290", "gich_mmio_read = { cycles = 20"))
    assert profile.load(str(mine)).costs["gich_mmio_read"] == 20


def test_unknown_profile():
    with pytest.raises(profile.ProfileError, match="available"):
        profile.load("no-such-cpu")
