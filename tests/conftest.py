import pytest

from armvirt import paths, profile
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig


@pytest.fixture(scope="session")
def xgene():
    return profile.load("xgene")


@pytest.fixture(scope="session")
def boot(xgene):
    """Boot an image once per session and share the result."""
    cache = {}

    def _boot(name, **cfg):
        key = (name, tuple(sorted(cfg.items())))
        if key not in cache:
            m = Machine(MachineConfig(kernel=paths.image_path(name), max_insns=400_000_000, **cfg), xgene,
                        console=Console(echo=False))
            cache[key] = m.run()
        return cache[key]
    return _boot
