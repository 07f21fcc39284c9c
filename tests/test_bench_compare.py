"""benchmarks/bench_compare.py keeps working: its machinery on tiny sizes, its page logic.

No timing assertions: the figures of a tiny run mean nothing.  What is checked is that
every cell of the installed contenders runs in its own process and reports its fields,
that the page marks what was not run, and that the targets are judged the right way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "bench_compare.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The script as a module (it imports bench_core and bench_asyncio from beside it).

    The modules stay imported for the rest of the session on purpose: they define QObject
    subclasses with signals, and letting PySide free such classes while the suite's
    QApplication lives on has crashed later tests (a segfault in ``processEvents``).
    """
    qt_api = os.environ.get("QT_API")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = sys.modules.get("bench_compare")
        if module is None:
            spec = importlib.util.spec_from_file_location("bench_compare", SCRIPT)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["bench_compare"] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))
        # The script picks qtpy's binding for its contenders; not the suite's business.
        if qt_api is None:
            os.environ.pop("QT_API", None)
        else:
            os.environ["QT_API"] = qt_api


def fake_results(bench: Any, casare_factor: float) -> dict[str, dict[str, float]]:
    """Every row measured; casare_workers' figures are the others' times ``casare_factor``."""
    base: dict[str, dict[str, float]] = {
        "throughput": {"us_per_task": 20.0, "gui_submit_ms": 100.0, "worst_gap_ms": 4.0},
        "roundtrip": {"median_us": 60.0, "worst_gap_ms": 2.0},
        "progress": {
            "wall_ms": 40.0,
            "bare_ms": 10.0,
            "ratio_vs_bare": 4.0,
            "gui_updates": 20.0,
            "worst_gap_ms": 4.0,
            "bare_gap_ms": 4.0,
        },
        "memory": {"rss_mb": 10.0, "py_mb": 8.0},
        "await": {"median_us": 80.0, "p90_us": 100.0},
        "await_batch": {"total_ms": 1000.0, "worst_gap_ms": 40.0},
    }
    results = {}
    for row in bench.PLAN:
        figures = dict(base[row.scenario])
        if row.contender == "casare":
            figures = {k: v * casare_factor for k, v in figures.items()}
            figures["gui_updates"] = 1.0  # coalesced: one update whatever the speed
        results[row.key] = figures
    return results


def test_bench_compare_targets_met_when_casare_is_far_ahead(bench: Any) -> None:
    targets = bench.evaluate_targets(fake_results(bench, casare_factor=0.1))
    assert targets
    assert [t for t in targets if t.met is not True] == []


def test_bench_compare_targets_missed_when_casare_is_behind(bench: Any) -> None:
    targets = bench.evaluate_targets(fake_results(bench, casare_factor=2.0))
    missed = {t.text for t in targets if t.met is False}
    assert any("executor bridge" in text for text in missed)
    assert any("tutorial" in text for text in missed)
    assert any("to_thread" in text for text in missed)
    assert any("bare loop" in text for text in missed)
    # The absolute bounds (map 3 µs, 16 ms gap, 50 ms gap) hold at these figures.
    assert all(t.met is not None for t in targets)


def test_bench_compare_targets_not_measured_without_results(bench: Any) -> None:
    targets = bench.evaluate_targets({})
    assert targets
    assert all(t.met is None for t in targets)


def test_bench_compare_page_marks_what_did_not_run(bench: Any) -> None:
    results = fake_results(bench, casare_factor=0.5)
    failed = "throughput/superqt/create_worker"
    flaky = "roundtrip/qt-async-threads/run"
    skipped = "await/qt-async-threads/run"
    del results[failed], results[skipped]
    meta = {
        "command": "python benchmarks/bench_compare.py",
        "python": "3.12.1",
        "versions": bench.versions(),
        "cpus": 2,
        "platform": "Linux",
        "repeat": 3,
        "scale": 1.0,
        "load_before": "1.00/1.00/1.00",
        "load_after": "1.00/1.00/1.00",
    }
    page = bench.render_markdown(
        results,
        {failed: ["RuntimeError: boom"] * 3, flaky: ["LostResultsError: 1 of 10 lost"]},
        {skipped: "not run: qt_async_threads is not installed"},
        meta,
    )
    assert "failed in 3 of 3 runs: RuntimeError: boom" in page
    # A row whose other runs succeeded keeps its figures, with the failures said below.
    assert "**1 of 3 runs failed** (LostResultsError: 1 of 10 lost)" in page
    assert "not run: qt_async_threads is not installed" in page
    # Every scenario a contender cannot do is named, with the reason.
    for scenario, contender in bench.NOT_AVAILABLE:
        reason = bench.NOT_AVAILABLE[scenario, contender]
        assert f"n/a: {reason}" in page
    # The reference rows and a ratio against them (other = 2 x casare).
    assert "*ref*" in page
    assert "| 2.00x |" in page
    for title in bench.SCENARIOS.values():
        assert f"### {title}" in page


def test_bench_compare_render_writes_the_page_and_a_png(bench: Any, tmp_path: Path) -> None:
    """``--render`` from saved figures, in a child process (matplotlib stays out of this one)."""
    # find_spec, not importorskip: matplotlib is only needed in the child, not in here.
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("the plot needs matplotlib (the bench dependency group)")
    meta = {
        "command": "python benchmarks/bench_compare.py --json raw.json",
        "python": "3.12.1",
        "versions": bench.versions(),
        "cpus": 2,
        "platform": "Linux",
        "repeat": 1,
        "scale": 1.0,
        "load_before": "1.00/1.00/1.00",
        "load_after": "1.00/1.00/1.00",
    }
    runs = {key: [figures] for key, figures in fake_results(bench, 0.5).items()}
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({"meta": meta, "runs": runs, "errors": {}, "skipped": {}}))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--render", str(raw), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "comparison.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = (tmp_path / "comparison.md").read_text()
    assert "Command: `python benchmarks/bench_compare.py --json raw.json`" in page
    assert bench.READING_BEGIN in page


#: One cell per code path of the script, from contenders that need nothing beyond the
#: ``async`` extra: the sliced and the batch submission, the round trip, the coalesced and
#: the per-update progress, the memory passes, and both await scenarios.  A process each.
TINY_ROWS = (
    "throughput/executor/bridge",
    "throughput/casare/map",
    "roundtrip/casare/then",
    "progress/casare/ctx.progress",
    "progress/executor/bridge",
    "memory/casare/signals",
    "await/casare/await",
    "await_batch/executor/gather",
)


def test_bench_compare_merge_pools_the_processes_of_several_runs(bench: Any) -> None:
    def saved(load: str, value: float, failed: list[str]) -> dict[str, Any]:
        meta = {
            "command": f"python benchmarks/bench_compare.py --json run{value:.0f}.json",
            "repeat": 1,
            "scale": 1.0,
            "load_before": load,
            "load_after": load,
        }
        runs = {"roundtrip/casare/then": [{"median_us": value}]}
        errors = {"roundtrip/tutorial/runnable": failed} if failed else {}
        return {"meta": meta, "runs": runs, "errors": errors, "skipped": {}}

    merged = bench.merge([saved("1.00", 1.0, ["boom"]), saved("2.00", 3.0, ["bang"])])
    assert merged["meta"]["repeat"] == 2
    assert merged["runs"]["roundtrip/casare/then"] == [{"median_us": 1.0}, {"median_us": 3.0}]
    assert merged["errors"]["roundtrip/tutorial/runnable"] == ["boom", "bang"]
    assert bench.run_loads(merged["meta"]) == [("1.00", "1.00"), ("2.00", "2.00")]
    assert bench.command_lines(merged["meta"])[-2] == (
        "python benchmarks/bench_compare.py --render run1.json run3.json"
    )


def test_bench_compare_keeps_the_hand_written_reading(bench: Any, tmp_path: Path) -> None:
    page = tmp_path / "comparison.md"
    assert "Not written yet" in bench.kept_reading(page)
    block = f"{bench.READING_BEGIN}\n## Reading the results\n\nBecause.\n{bench.READING_END}"
    page.write_text(f"# old figures\n\n{block}\n\n## old tables\n")
    assert bench.kept_reading(page) == block


@pytest.mark.slow
def test_bench_compare_runs_cells_of_installed_contenders(tmp_path: Path) -> None:
    """The real script, end to end: one process per cell, tiny sizes, no plot."""
    pytest.importorskip("qasync", reason="every cell runs on a qasync loop (the async extra)")
    raw = tmp_path / "raw.json"
    # The child imports this checkout's casare_workers, whatever the environment installed.
    path = os.pathsep.join(filter(None, [str(BENCHMARKS.parent), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=path)
    rows = [arg for key in TINY_ROWS for arg in ("--row", key)]
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *rows,
            *("--scale", "0.005", "--repeat", "1", "--no-plot"),
            *("--out", str(tmp_path), "--json", str(raw)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads(raw.read_text())
    assert saved["errors"] == {}
    runs = saved["runs"]
    assert sorted(runs) == sorted(TINY_ROWS)
    for key, values in runs.items():
        assert len(values) == 1, key
        assert all(isinstance(v, float) for v in values[0].values()), key
    # The executor bridge delivers every progress update; casare_workers coalesces them.
    n = saved["meta"]["scale"] * 200_000
    assert runs["progress/executor/bridge"][0]["gui_updates"] == n
    assert 1 <= runs["progress/casare/ctx.progress"][0]["gui_updates"] < n
    page = (tmp_path / "comparison.md").read_text()
    assert "Command: `python benchmarks/bench_compare.py --row" in page
    assert "| superqt |" in page
    assert "not run" in page


def test_bench_compare_failed_cell_ends_its_stderr_with_the_error() -> None:
    """The orchestrator quotes a failed cell's last stderr line: it must be the error."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--cell", "throughput/nobody/nothing"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        check=False,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == "KeyError: 'throughput/nobody/nothing'"
