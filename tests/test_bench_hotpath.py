"""benchmarks/bench_hotpath.py keeps working: a tiny end-to-end run, its selection and targets.

No timing assertions: the figures of a tiny run mean nothing.  What is checked is that
every kind of cell runs in its own process and reports its fields, that a cell refuses
to measure a ``casare_workers`` other than the one it was given (what makes the old/new
comparison trustworthy), that ``--baseline`` cleans its temporary worktree up, and that
the targets are judged the right way.
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
SCRIPT = BENCHMARKS / "bench_hotpath.py"


@pytest.fixture(scope="module")
def hotpath() -> Iterator[ModuleType]:
    """The script as a module (it imports bench_core and _common from beside it).

    The modules stay imported for the rest of the session on purpose, as in
    test_bench_compare.py: they define QObject subclasses, and letting PySide free such
    classes while the suite's QApplication lives on has crashed later tests.
    """
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = sys.modules.get("bench_hotpath")
        if module is None:
            spec = importlib.util.spec_from_file_location("bench_hotpath", SCRIPT)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["bench_hotpath"] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def run_script(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
        check=False,
    )


def fake_results(bridge_us: float, then_us: float, submit_us: float) -> dict[str, Any]:
    """Every figure the targets read, at every size, for the new revision only."""
    results: dict[str, dict[str, float]] = {}
    for n in (2_000, 20_000, 100_000):
        results[f"throughput/bridge/{n}"] = {"us_per_task": bridge_us}
        for contender in ("then", "worker"):
            results[f"throughput/{contender}/{n}"] = {
                "us_per_task": then_us,
                "gui_submit_us": submit_us,
            }
            results[f"submit_idle/{contender}/{n}"] = {"gui_submit_us": submit_us}
    results["roundtrip/bridge"] = {"median_us": bridge_us}
    results["roundtrip/then"] = {"median_us": then_us}
    results["roundtrip/worker"] = {"median_us": then_us}
    results["import/qtcore"] = {"ms": 100.0}
    results["import/casare"] = {"ms": 100.0 * then_us / bridge_us * 3}
    return results


def test_bench_hotpath_targets_met_when_casare_is_far_ahead(hotpath: Any) -> None:
    sizes = hotpath.Sizes()
    targets = hotpath.evaluate_targets(fake_results(30.0, 5.0, 1.0), sizes)
    assert len(targets) == 10
    assert [t.text for t in targets if t.met is not True] == []


def test_bench_hotpath_targets_missed_when_casare_is_behind(hotpath: Any) -> None:
    sizes = hotpath.Sizes()
    targets = hotpath.evaluate_targets(fake_results(30.0, 60.0, 9.0), sizes)
    # Flat (the same cost at every size) still holds; everything else misses.
    missed = [t.text for t in targets if t.met is False]
    assert len(missed) == 9
    assert all("flat" not in text for text in missed)
    speedup = next(t for t in targets if "bridge at 2 000" in t.text)
    assert speedup.measured.startswith("0.50x")


def test_bench_hotpath_flatness_is_not_judged_without_the_largest_size(hotpath: Any) -> None:
    sizes = hotpath.Sizes(sizes=(2_000, 20_000))
    results = fake_results(30.0, 5.0, 1.0)
    results["throughput/then/20000"]["us_per_task"] = 10.0
    flat = next(t for t in hotpath.evaluate_targets(results, sizes) if "flat" in t.text)
    assert flat.met is None
    assert flat.measured == "2.00x from 2 000 to 20 000 (100 000 not run)"


def test_bench_hotpath_targets_not_measured_without_results(hotpath: Any) -> None:
    targets = hotpath.evaluate_targets({}, hotpath.Sizes())
    assert targets
    assert all(t.met is None for t in targets)


def test_bench_hotpath_baseline_rows_are_judged_new_over_old(hotpath: Any) -> None:
    sizes = hotpath.Sizes(sizes=(2_000,))
    results = {
        "progress/then": {"wall_ms": 50.0},
        "progress/then@old": {"wall_ms": 100.0},
        "throughput/map/2000": {"us_per_task": 0.5},
        "throughput/map/2000@old": {"us_per_task": 0.25},
    }
    flood, map_ = hotpath.evaluate_against_baseline(results, sizes)
    assert (flood.measured, flood.met) == ("0.50x the baseline", True)
    assert (map_.measured, map_.met) == ("2.00x the baseline", False)
    # The revision's own targets read the @old figures, the bridge's stay shared.
    results["throughput/bridge/2000"] = {"us_per_task": 30.0}
    results["throughput/then/2000@old"] = {"us_per_task": 15.0}
    old = hotpath.evaluate_targets(results, sizes, "@old")
    assert old[0].measured.startswith("2.00x")
    assert hotpath.evaluate_targets(results, sizes)[0].met is None


def test_bench_hotpath_only_selects_scenarios_contenders_and_pairs(hotpath: Any) -> None:
    sizes = hotpath.Sizes(sizes=(10, 20))
    keys = [c.key for c in hotpath.plan(sizes, ["then", "throughput"], baseline=False)]
    assert keys == ["throughput/then/10", "throughput/then/20"]
    keys = [c.key for c in hotpath.plan(sizes, ["roundtrip/deque", "import"], baseline=True)]
    assert keys == ["roundtrip/deque", "import/qtcore", "import/casare", "import/casare@old"]
    everything = hotpath.plan(sizes, [], baseline=True)
    old = {c.contender for c in everything if c.old}
    assert old == {"then", "worker", "map", "casare"}
    assert len(everything) == len({c.key for c in everything})


def test_bench_hotpath_rejects_an_unknown_only_token(hotpath: Any) -> None:
    out = run_script("--only", "throughput,nobody")
    assert out.returncode == 2
    assert "--only: unknown nobody" in out.stderr


def test_bench_hotpath_runs_every_kind_of_cell(tmp_path: Path) -> None:
    """The real script, end to end: one process per cell (and per import), tiny sizes."""
    cells = (
        "throughput/bridge",
        "throughput/then",
        "throughput/map",
        "throughput/bare",
        "submit_idle/worker",
        "roundtrip/deque",
        "progress/then",
        "import/casare",
        "import/qtcore",
    )
    raw = tmp_path / "raw.json"
    out = run_script(
        *("--only", ",".join(cells), "--sizes", "30", "--roundtrips", "5", "--flood", "100"),
        *("--repeat", "1", "--import-runs", "1", "--json", str(raw)),
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads(raw.read_text())
    assert saved["errors"] == {}
    runs = saved["runs"]
    expected = {"throughput/bridge/30", "throughput/then/30", "throughput/map/30"}
    expected |= {"throughput/bare/30", "submit_idle/worker/30", "roundtrip/deque"}
    expected |= {"progress/then", "import/casare", "import/qtcore"}
    assert set(runs) == expected
    fields = {
        "throughput/then/30": {"us_per_task", "gui_submit_us", "worst_gap_ms"},
        "throughput/bare/30": {"us_per_task"},
        "submit_idle/worker/30": {"gui_submit_us", "drain_us_per_task"},
        "roundtrip/deque": {"median_us", "worst_gap_ms"},
        "progress/then": {"wall_ms", "bare_ms", "x_bare", "gui_updates", "worst_gap_ms"},
        "import/casare": {"ms"},
    }
    for key, values in runs.items():
        assert len(values) == 1, key
        assert all(isinstance(v, float) and v > 0 for v in values[0].values()), key
        if key in fields:
            assert set(values[0]) == fields[key], key
    # casare_workers coalesces the 100 progress calls; it still delivers at least one.
    assert 1 <= runs["progress/then"][0]["gui_updates"] < 100
    assert "casare_workers" in saved["import_breakdown"]["import/casare"]
    for heading in ("### Throughput", "### Round trip", "### Progress flood", "### Import"):
        assert heading in out.stdout
    assert "| bare loop (floor) | 30 |" in out.stdout
    assert "### Targets (issue 14)" in out.stdout


def test_bench_hotpath_cell_refuses_another_casare_workers(tmp_path: Path) -> None:
    """A cell measuring the wrong checkout (old for new) fails, naming both places."""
    out = run_script(
        *("--cell", "throughput/then/30", "--n", "30", "--casare-root", str(tmp_path))
    )
    assert out.returncode == 1
    assert out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: casare_workers imported from ")
    assert last.endswith(f"expected under {tmp_path}")


def test_bench_hotpath_baseline_runs_in_a_temporary_worktree(tmp_path: Path) -> None:
    root = BENCHMARKS.parent
    probe = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("--baseline needs a git checkout")
    raw = tmp_path / "raw.json"
    out = run_script(
        *("--only", "throughput/then", "--sizes", "30", "--repeat", "1"),
        *("--baseline", "HEAD", "--json", str(raw)),
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads(raw.read_text())
    assert saved["errors"] == {}
    assert set(saved["runs"]) == {"throughput/then/30", "throughput/then/30@old"}
    assert "| then @old (" in out.stdout
    checkout = saved["meta"]["baseline_path"]
    assert not Path(checkout).exists()
    listed = subprocess.run(
        ["git", "-C", str(root), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert checkout not in listed
