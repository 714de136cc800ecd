"""Tests that need an outside tool: in CI (CI=true) a missing tool fails the test with
one line; elsewhere the test is skipped with the reason."""
import os

import pytest

CI = os.environ.get("CI") == "true"


def need(ok: bool, reason: str) -> None:
    if not ok:
        if CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
