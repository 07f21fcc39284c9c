"""The PySide6 6.12.0 / Python 3.11 defect: pins, behavioural self-check, and proof."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
import venv
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from PySide6.QtCore import QObject, QThreadPool, Signal

from casare_workers import BrokenBindingError, Worker, WorkerManager, _selfcheck
from casare_workers.pytest_plugin import wait_for_handle

ROOT = Path(__file__).resolve().parents[1]


def pyside_specifiers(python_version: str) -> list[Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    env = {"python_version": python_version, "python_full_version": python_version + ".0"}
    return [
        r
        for r in reqs
        if r.name.lower() == "pyside6-essentials" and (r.marker is None or r.marker.evaluate(env))
    ]


@pytest.mark.parametrize("python_version", ["3.11"])
@pytest.mark.parametrize("pyside", ["6.12.0", "6.12.1", "6.12.5", "6.13.0"])
def test_pins_make_pyside_6_12_impossible_before_python_3_12(
    python_version: str, pyside: str
) -> None:
    reqs = pyside_specifiers(python_version)
    assert reqs, "no PySide6 requirement applies"
    assert not all(r.specifier.contains(Version(pyside)) for r in reqs)


@pytest.mark.parametrize(
    ("python_version", "pyside"),
    [("3.11", "6.11.3"), ("3.11", "6.9.0"), ("3.12", "6.12.0"), ("3.13", "6.12.0")],
)
def test_pins_allow_the_good_combinations(python_version: str, pyside: str) -> None:
    reqs = pyside_specifiers(python_version)
    assert reqs
    assert all(r.specifier.contains(Version(pyside)) for r in reqs)


class _Emitter(QObject):
    ping = Signal()
    flag = Signal(bool)


def test_signals_and_pool_tasks_do_not_lose_true_or_none(qapp: Any) -> None:
    """10 000 emits, 10 000 manager tasks, 10 000 QThreadPool runs: no reference lost."""
    emitter = _Emitter()
    received: list[bool] = []
    emitter.flag.connect(received.append)
    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(10_000):
        emitter.ping.emit()
        emitter.flag.emit(True)
    assert len(received) == 10_000
    with WorkerManager() as manager:
        handle = manager.map(bool, range(1, 10_001), chunksize=1)
        assert all(wait_for_handle(handle, 60))
    pool = QThreadPool()
    workers = [Worker(bool, 1) for _ in range(10_000)]
    for worker in workers:
        pool.start(worker)
    assert pool.waitForDone(60_000)
    del workers
    qapp.processEvents()
    assert sys.getrefcount(True) >= true_before
    assert sys.getrefcount(None) >= none_before


def test_detector_flags_exact_losses_and_gives_them_back() -> None:
    """The probe logic on a mortal object (True/None are immortal on 3.12+)."""
    target = object()
    holders = [target] * 100

    def leaky(n: int) -> None:
        for _ in range(n):
            holders.pop()

    before = sys.getrefcount(target)
    assert _selfcheck._measure(target, leaky) is True
    assert sys.getrefcount(target) == before  # the lost references were given back

    def clean(n: int) -> None:
        for _ in range(n):
            holders.append(holders.pop())

    assert _selfcheck._measure(target, clean) is False


def test_real_binding_passes_the_self_check(qapp: Any) -> None:
    _selfcheck.check_bool_leak()
    _selfcheck.check_none_leak()


def test_bad_binding_is_reported_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_selfcheck, "_measure", lambda obj, op: True)
    with pytest.raises(BrokenBindingError, match=r"PySide6-Essentials<6\.12.*Python 3\.12"):
        _selfcheck.check_bool_leak()


@pytest.fixture(scope="module")
def broken_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of this very Python with the defective PySide6 6.12.0 (needs the index)."""
    path = tmp_path_factory.mktemp("pyside612")
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "PySide6-Essentials==6.12.0",
            "shiboken6==6.12.0",
        ],
        check=True,
        timeout=600,
    )
    return python


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="True/None are immortal on 3.12+")
def test_import_refuses_the_defective_binding(broken_venv: Path) -> None:
    # Control: in this environment the defect is real and aborts the interpreter.
    control = subprocess.run(
        [
            str(broken_venv),
            "-c",
            textwrap.dedent("""
            from PySide6.QtCore import QObject, Signal
            class E(QObject):
                s = Signal()
            e = E()
            for _ in range(100_000):
                e.s.emit()
        """),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert control.returncode < 0, control
    assert "bool_dealloc" in control.stderr
    # casare_workers detects it by behaviour and refuses with the fix, without aborting.
    guarded = subprocess.run(
        [str(broken_venv), "-c", "import casare_workers"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert guarded.returncode == 1, guarded
    assert "BrokenBindingError" in guarded.stderr
    assert "pip install 'PySide6-Essentials<6.12'" in guarded.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the pins allow 6.12 on 3.12+")
def test_pip_refuses_to_install_with_pyside_6_12(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--disable-pip-version-check",
            str(ROOT),
            "PySide6-Essentials==6.12.0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "ResolutionImpossible" in result.stderr or "conflict" in result.stderr.lower()
