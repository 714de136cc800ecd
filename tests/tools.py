"""External tools a test needs: outside CI a missing one skips with the reason; in CI
(CI=true) it fails with a one-line reason, never a silent skip (COMMON.md)."""
from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} not installed: {why}"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path
