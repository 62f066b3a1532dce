"""The Makefile's setup and clean rules, run with `make -n` or in a scratch copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # Not the variables of a `make test` this may run under (PYTHON=... among them).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.pop("PYTHON", None)
    env.pop("DB", None)
    return subprocess.run(
        ["make", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def fake_python(path: Path, version: str) -> Path:
    """A stand-in interpreter that answers the Makefile's version question."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The Makefile alone in an empty tree, with a no-op system-packages script."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").touch()
    (tmp_path / "protos").mkdir()
    fake_python(tmp_path / ".ci" / "system-packages", "system-packages")
    return tmp_path


def test_clean_keeps_var_and_distclean_removes_it() -> None:
    clean = make("-n", "clean")
    assert clean.returncode == 0, clean.stderr
    assert "rm -rf .venv" in clean.stdout
    assert "var" not in clean.stdout.replace("./var", "")  # var/ is only skipped by find
    distclean = make("-n", "distclean")
    assert distclean.returncode == 0, distclean.stderr
    assert distclean.stdout.startswith(clean.stdout)
    assert distclean.stdout.splitlines()[-1] == "rm -rf var"


def test_an_older_python_is_refused_in_one_line_before_a_venv_is_made(scratch: Path) -> None:
    old = fake_python(scratch / "bin" / "python3.9", "3.9.2")
    result = make("setup", f"PYTHON={old}", cwd=scratch)
    assert result.returncode != 0
    assert f"keyslot needs Python >= 3.11 but {old} is 3.9.2" in result.stderr
    assert not (scratch / ".venv").exists()


def test_a_venv_of_an_older_python_is_rebuilt(scratch: Path) -> None:
    fake_python(scratch / ".venv" / "bin" / "python", "3.9.2")  # what a failed setup left
    (scratch / ".venv" / ".installed").touch()
    assert "python3 -m venv --clear .venv" in make("-n", "setup", cwd=scratch).stdout
    newer = fake_python(scratch / "bin" / "python3.11", "3.11.9")
    plan = make("-n", "setup", f"PYTHON={newer}", cwd=scratch)
    assert f"{newer} -m venv --clear .venv" in plan.stdout


def test_a_venv_of_another_python_is_rebuilt_only_when_one_is_asked_for(scratch: Path) -> None:
    fake_python(scratch / ".venv" / "bin" / "python", "3.12.1")
    (scratch / ".venv" / ".installed").touch()
    assert "venv" not in make("-n", "setup", cwd=scratch).stdout  # a working venv is kept
    newer = fake_python(scratch / "bin" / "python3.13", "3.13.0")
    plan = make("-n", "setup", f"PYTHON={newer}", cwd=scratch)
    assert f"{newer} -m venv --clear .venv" in plan.stdout


def test_make_test_runs_both_tiers() -> None:
    plan = make("-n", "test")
    assert plan.returncode == 0, plan.stderr
    # What the runner runs: tests/unit/test_tiers.py.
    assert plan.stdout.splitlines()[-1] == ".venv/bin/python -m tests.tiers"


def test_make_run_is_on_sqlite_unless_db_says_postgres() -> None:
    assert make("-n", "run").stdout.splitlines()[-1].endswith("devrun --engine sqlite")
    postgres = make("-n", "run", "DB=postgres").stdout.splitlines()[-1]
    assert postgres.endswith("devrun --engine postgres")
