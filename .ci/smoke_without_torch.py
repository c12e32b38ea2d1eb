"""Every command on the shipped examples, in an install without torch: no traceback, no torch import."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = [
    (["validate", "examples"], {0, 1}),
    (["validate", "--format", "concise", "examples/vlm_freeze_traps.toml"], {0}),
    (["explain", "examples/vlm_mot.toml", "examples/vlm_cross_attention_freeze_schedule.toml"], {0}),
    (["freeze-plan", "--format", "json", "examples/vlm_freeze_traps.toml"], {0}),
    (["freeze-plan", "--params", "examples/vlm_moma.toml"], {0}),
    (["fit", "examples/llama_70b.toml", "--gpu", "H200", "--world-size", "32"], {0}),
    (["convert", "--check", "examples/legacy/vlm_mot_staged.legacy.toml"], {1}),
    (["convert", "examples/legacy/vlm_cross_attn_dotted.legacy.toml"], {0}),
    (["rules"], {0}),
]
PROBE = "import sys, runpy; sys.argv = ['kforge', *sys.argv[1:]]; runpy.run_module('kforge_cli', run_name='__main__')"


def main() -> int:
    if importlib.util.find_spec("torch") is not None:
        print("torch is installed in this environment; the smoke run needs one without it")
        return 1
    failed = 0
    for args, codes in RUNS:
        # The probe fails if anything imports torch after all.
        command = [sys.executable, "-I", "-X", "importtime", "-c", PROBE, *args]  # -I: the installed package
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        imported_torch = any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())
        ok = done.returncode in codes and "Traceback" not in done.stderr and not imported_torch
        print(f"{'ok  ' if ok else 'FAIL'} kforge {' '.join(args)} -> exit {done.returncode}")
        if not ok:
            failed += 1
            print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
