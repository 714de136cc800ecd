import pytest

from armvirt import paths, profile
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig
from armvirt.serial import ScriptInput


@pytest.fixture(scope="session")
def xgene():
    return profile.load("xgene")


@pytest.fixture(scope="session")
def boot(xgene):
    """Boot an image once per session and share the result."""
    cache = {}

    def _boot(name, stdin: bytes | None = None, **cfg):
        """`stdin`: the bytes of a piped stdin for the PL011 (None: no input)."""
        key = (name, stdin, tuple(sorted(cfg.items())))
        if key not in cache:
            m = Machine(MachineConfig(kernel=paths.image_path(name), max_insns=400_000_000, **cfg), xgene,
                        console=Console(echo=False), serial_input=None if stdin is None else ScriptInput(stdin))
            cache[key] = m.run()
        return cache[key]
    return _boot
