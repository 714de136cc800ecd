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


def console_section(run: dict, key: str, ends, what: str) -> list[str]:
    """The console lines a guest printed after its marker line `=={key}==`, up to the first
    line `ends(line)` holds for (or the end); a missing marker fails the test, naming
    `what` and showing the console's tail."""
    lines = run["stdout"].splitlines()
    try:
        start = lines.index(f"=={key}==") + 1
    except ValueError:
        pytest.fail(f"{run['name']}: no answer to {what}; console tail:\n" + "\n".join(lines[-40:]),
                    pytrace=False)
    end = next((i for i in range(start, len(lines)) if ends(lines[i])), len(lines))
    return lines[start:end]
