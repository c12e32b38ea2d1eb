"""Configs built to exhaust kforge answer like any other file: in bounded time, memory and output.

Each case is a real job file (examples/vlm_joint_decoder.toml) with one hostile
change, at the size that once took minutes or gigabytes. Every command runs it
in a child process under a 2 GiB address-space cap and a time limit, so a
regression to a quadratic pass or an unbounded report fails here instead of
hanging the suite. The limits are generous ceilings (the answers take seconds),
not speed targets: speed lives in benchmarks/.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "examples" / "vlm_joint_decoder.toml"
COMMANDS = ("validate", "explain", "freeze-plan", "fit")
ADDRESS_SPACE = 2 << 30
SECONDS = 120
MAX_OUTPUT = 1 << 20
MAX_LINE = 10_000

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the memory cap uses Linux RLIMIT_AS")


def _after_header(text: str, section: str, lines: list[str]) -> str:
    header = f"[{section}]\n"
    assert header in text
    return text.replace(header, header + "".join(line + "\n" for line in lines), 1)


def _set(text: str, section: str, key: str, value: str) -> str:
    lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
    return _after_header("\n".join(lines) + "\n", section, [f"{key} = {value}"])


def dotted_key(text: str) -> str:
    return text + "\n[extra]\n" + ".".join(["a"] * 30_000) + " = 1\n"


def unknown_keys(text: str) -> str:
    return _after_header(text, "model", [f"zz_unknown_{i:07d} = {i}" for i in range(100_000)])


def freeze_stages(text: str) -> str:
    stages = [f'{{start_step = {step}, specs = [{{module = "transformer", frozen = {str(step % 2 == 1).lower()}}}]}},'
              for step in range(1, 10_001)]
    return _after_header(text, "vlm", ["freeze_schedule = [", *stages, "]"])


def many_experts(text: str) -> str:
    return _after_header(text, "model", ["num_experts = 20000", "moe_top_k = 2"])


def many_layers(text: str) -> str:
    return _set(text, "model", "n_layers", "19999")


def long_module_string(text: str) -> str:
    return _after_header(text, "vlm", ['freeze = [{module = "' + "x" * 5_000_000 + '", frozen = true}]'])


def many_aliases(text: str) -> str:
    return text + "\n[vlm.module_patterns]\n" + "".join(f'a{i} = ["transformer.layers.{i}.*"]\n'
                                                       for i in range(20_000))


def many_specs(text: str) -> str:
    specs = ", ".join(f'{{module = "transformer.layers.{i % 40}.*", frozen = {str(i % 2 == 0).lower()}}}'
                      for i in range(20_000))
    return _after_header(text, "vlm", [f"freeze = [{specs}]"])


CASES: list[Callable[[str], str]] = [dotted_key, unknown_keys, freeze_stages, many_experts, many_layers,
                                     long_module_string, many_aliases, many_specs]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run(command: str, path: Path) -> subprocess.CompletedProcess[str] | str:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    try:
        return subprocess.run([sys.executable, "-m", "kforge_cli", command, str(path)], capture_output=True,
                              text=True, timeout=SECONDS, cwd=path.parent, env=env, preexec_fn=_cap_memory)
    except subprocess.TimeoutExpired:
        return f"no answer within {SECONDS} s"


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[tuple[str, str], subprocess.CompletedProcess[str] | str]:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / ".git").mkdir()  # keep [tool.kforge] discovery inside the folder
    base = BASE.read_text()
    jobs = []
    for make in CASES:
        path = folder / f"{make.__name__}.toml"
        path.write_text(make(base))
        jobs += [(make.__name__, command, path) for command in COMMANDS]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda job: _run(job[1], job[2]), jobs)
        return {(name, command): result for (name, command, _), result in zip(jobs, results)}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", [make.__name__ for make in CASES])
def test_hostile_config_gets_an_answer(answers, case, command):
    run = answers[case, command]
    assert not isinstance(run, str), run
    assert run.returncode in (0, 1), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert len(run.stdout) + len(run.stderr) < MAX_OUTPUT
    assert max(map(len, (run.stdout + run.stderr).splitlines()), default=0) < MAX_LINE  # no value printed whole
    assert f"{case}.toml" in run.stdout + run.stderr  # the verdict names the file


def test_the_hostile_cases_are_what_they_claim():
    """Each generator makes the file its name says (a case that silently shrank would test nothing)."""
    base = BASE.read_text()
    assert dotted_key(base).count(".a") == 29_999
    assert unknown_keys(base).count("zz_unknown_") == 100_000
    assert freeze_stages(base).count("start_step") == 10_000
    assert "num_experts = 20000" in many_experts(base)
    assert "\nn_layers = 19999\n" in many_layers(base) and "\nn_layers = 32\n" not in many_layers(base)
    assert "x" * 5_000_000 in long_module_string(base)
    assert many_aliases(base).count('"transformer.layers.') == 20_000
    assert many_specs(base).count("{module = ") == 20_000
