"""The one way CLI tests run kforge: in-process, through the real entry point.

`kforge(...)` checks the exit code before anything else, so a test can never
pass on the right output with the wrong status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from kforge_cli.cli.main import main

GOLDEN_WIDTH = 100


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def kforge(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", str(GOLDEN_WIDTH))
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)

    def run(*args: str, expect: int) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        assert code == expect, (
            f"kforge {' '.join(map(str, args))} exited {code}, expected {expect}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
        return Run(code, out, err)

    return run
