"""The contributor commands the README documents: ``./dev demo ...``, ``./dev docs``.

Running them for real builds virtual environments (minutes, network): these tests check
each hop of the way instead, with the real pieces where they are cheap.  ``./dev`` runs
with a stand-in ``nox`` that records its arguments; the real nox turns them into a
session's arguments; the real noxfile sessions run against a recording session; the demo's
own parser reads what arrives.  ``./dev docs`` from a fresh clone is proved by hand (see
the commit that added this file).
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_DEMO = ["--screenshot", "demo.png", "--run-for", "8"]


def run_dev(tmp_path: Path, *args: str) -> list[str]:
    """Run ``./dev ARGS`` with a stand-in nox; return the arguments nox was given."""
    shutil.copy(ROOT / "dev", tmp_path / "dev")
    bin_dir = tmp_path / ".venv-dev" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "nox-args"
    fake = bin_dir / "nox"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "PYENV_VERSION"}
    subprocess.run(["sh", str(tmp_path / "dev"), *args], check=True, env=env, timeout=60)
    return record.read_text().splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="./dev is a POSIX shell script")
@pytest.mark.parametrize(
    "argv",
    [["demo", "--", *README_DEMO], ["demo", *README_DEMO]],
    ids=["with --", "without --"],
)
def test_dev_demo_passes_the_app_arguments_once(tmp_path: Path, argv: list[str]) -> None:
    # README: "./dev demo -- --screenshot demo.png --run-for 8" failed with
    # "unrecognized arguments: --" (a second "--" reached the app).
    assert run_dev(tmp_path, *argv) == ["--session", "demo", "--", *README_DEMO]


@pytest.mark.skipif(sys.platform == "win32", reason="./dev is a POSIX shell script")
def test_dev_docs_and_test_run_their_sessions(tmp_path: Path) -> None:
    assert run_dev(tmp_path, "docs") == ["--session", "docs"]
    assert run_dev(tmp_path, "test") == ["--session", "lint", "tests"]


def test_nox_hands_the_demo_session_exactly_the_app_arguments(tmp_path: Path) -> None:
    pytest.importorskip("nox")
    noxfile = tmp_path / "noxfile.py"
    out = tmp_path / "posargs"
    noxfile.write_text(
        textwrap.dedent(
            f"""
            import nox

            @nox.session(python=False)
            def demo(session):
                with open({str(out)!r}, "w") as f:
                    f.write("\\n".join(session.posargs))
            """
        )
    )
    argv = ["--session", "demo", "--", *README_DEMO]  # what ./dev gives nox (above)
    subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(noxfile), *argv],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.read_text().splitlines() == README_DEMO


class RecordingSession:
    """Stands in for ``nox.Session``: records what a session installs and runs."""

    def __init__(self, posargs: list[str], python: str = "3.12") -> None:
        self.posargs = posargs
        self.python = python
        self.installed: list[str] = []
        self.ran: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        self.installed += args

    def run(self, *args: str, **_kwargs: Any) -> None:
        self.ran.append(args)


@functools.cache
def load_noxfile() -> Any:
    """The real noxfile, imported once (nox refuses to register a session twice)."""
    pytest.importorskip("nox")
    import importlib.util

    spec = importlib.util.spec_from_file_location("casare_noxfile", ROOT / "noxfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    cwd = os.getcwd()
    os.chdir(ROOT)  # the noxfile reads pyproject.toml relative to itself
    try:
        spec.loader.exec_module(module)
    finally:
        os.chdir(cwd)
    return module


def test_the_demo_session_runs_the_app_with_its_arguments() -> None:
    from demo_app.app import parse_args

    session = RecordingSession(list(README_DEMO))
    load_noxfile().demo(session)
    assert session.ran == [("python", "-m", "demo_app", *README_DEMO)]
    args = parse_args(list(session.ran[0][3:]))
    assert args.screenshot == Path("demo.png")
    assert args.run_for == 8.0


def test_the_docs_session_installs_what_autodoc_imports() -> None:
    # ./dev docs failed in a fresh clone: autodoc imports casare_workers.pytest_plugin,
    # which imports pytest, and the docs session did not install it.
    session = RecordingSession([])
    load_noxfile().docs(session)
    installed = " ".join(session.installed)
    for requirement in ("sphinx", "myst-parser", "furo", "pytest"):
        assert requirement in installed, requirement
    assert any(args[0] == "sphinx-build" and "-W" in args for args in session.ran)
