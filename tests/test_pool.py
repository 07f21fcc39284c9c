from __future__ import annotations

from typing import Any

import pytest

from casare_workers import ConfigurationError, PoolConfig, WorkerManager
from casare_workers._pools._pool import POOL_FACTORIES, build_pool
from casare_workers._pools._processpool import ProcessPool
from casare_workers._pools._threadpool import ThreadPool


def test_build_pool_maps_each_kind_to_its_backend() -> None:
    assert isinstance(build_pool("a", PoolConfig(1)), ThreadPool)
    assert isinstance(build_pool("b", PoolConfig(1, kind="process")), ProcessPool)


def test_missing_optional_dependency_names_the_extra(
    qapp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(POOL_FACTORIES, "dask", ("._no_such_backend", "DaskPool"))
    config = PoolConfig(1, kind="dask", address="tcp://127.0.0.1:8786")
    with pytest.raises(ConfigurationError, match=r"pip install 'casare_workers\[dask\]'"):
        WorkerManager(pools={"cluster": config})
