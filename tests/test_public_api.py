from __future__ import annotations

import importlib
import pkgutil

import casare_workers


def test_all_is_sorted_unique_and_importable() -> None:
    names = casare_workers.__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(casare_workers, name), name


def test_public_objects_claim_the_public_module() -> None:
    for name in casare_workers.__all__:
        obj = getattr(casare_workers, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "casare_workers", name


def test_private_modules_declare_all() -> None:
    # Every module, those of the subpackages (_core, _pools, ...) included; a module of
    # an optional extra that is not installed (the Dask pool) cannot be looked at.
    for info in pkgutil.walk_packages(casare_workers.__path__, "casare_workers."):
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:
            if exc.name in ("distributed", "cloudpickle"):
                continue
            raise
        assert isinstance(getattr(module, "__all__", None), tuple), info.name


def test_low_level_names_moved_to_lowlevel_with_a_deprecated_alias() -> None:
    import pytest

    from casare_workers import lowlevel

    for name in ("DeliveryEngine", "GuiGarbageCollector", "get_engine"):
        assert name not in casare_workers.__all__
        with pytest.warns(DeprecationWarning, match="casare_workers.lowlevel"):
            assert getattr(casare_workers, name) is getattr(lowlevel, name)


def test_renamed_names_keep_their_old_spelling_as_aliases(qapp: object) -> None:
    import pytest

    from casare_workers import TaskError, TaskFailure, WorkerManager
    from casare_workers.pytest_plugin import wait_for_handle

    assert TaskError is TaskFailure
    with WorkerManager() as manager:
        handle = manager.submit(int, "x")
        with pytest.raises(ValueError, match="invalid literal"):
            wait_for_handle(handle)
        assert handle.failure is not None
        with pytest.warns(DeprecationWarning, match="TaskHandle.failure"):
            assert handle.error is not None
        assert handle.progress_value is None
        with pytest.warns(DeprecationWarning, match="TaskHandle.progress_value"):
            assert handle.progress is None


def test_submit_is_typed_with_the_function_it_runs(qapp: object) -> None:
    from typing import assert_type

    from casare_workers import TaskContext, TaskHandle, WorkerManager
    from casare_workers.pytest_plugin import wait_for_handle

    def length(text: str) -> int:
        return len(text)

    def with_ctx(text: str, ctx: TaskContext) -> bytes:
        return text.encode()

    with WorkerManager() as manager:
        handle = manager.submit(length, "abc")
        assert_type(handle, TaskHandle[int])  # checked by mypy over the tests
        other = manager.submit(with_ctx, "ab")  # ctx passed by the manager: allowed
        assert_type(other, TaskHandle[bytes])
        assert wait_for_handle(handle) == 3
        assert wait_for_handle(other) == b"ab"


def test_import_leaves_what_only_some_applications_use_to_first_use() -> None:
    # In a fresh interpreter: the import itself, then the first use of each lazy part.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        import casare_workers
        heavy = ("asyncio", "multiprocessing", "concurrent.futures.process", "subprocess",
                 "pickle", "PySide6.QtWidgets", "PySide6.QtGui", "casare_workers._bridge",
                 "casare_workers._jobs", "casare_workers._model", "casare_workers._delegate")
        print(sorted(name for name in heavy if name in sys.modules))
        assert "LongJob" in dir(casare_workers)
        job, slot = casare_workers.LongJob, casare_workers.async_slot
        assert job.__module__ == slot.__module__ == "casare_workers"
        assert casare_workers.LongJob is job
        import pickle
        from concurrent.futures.process import BrokenProcessPool
        crashed = casare_workers.WorkerCrashedError
        from casare_workers._errors import WorkerCrashedError
        assert crashed is WorkerCrashedError and issubclass(crashed, BrokenProcessPool)
        assert type(pickle.loads(pickle.dumps(crashed("gone")))) is crashed
        unpicklable = casare_workers.SerializationError
        assert issubclass(unpicklable, pickle.PicklingError)
        assert type(pickle.loads(pickle.dumps(unpicklable("no")))) is unpicklable
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "ok"], out.stdout
