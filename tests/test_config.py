from __future__ import annotations

from typing import Any

import pytest

from casare_workers import ConfigurationError, PoolConfig, WorkerManager
from casare_workers._config import default_pool_configs, resolve_pool_configs


def test_defaults_follow_the_seed_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    configs = default_pool_configs()
    assert configs["io"].max_workers == min(20, 2 * 2 + 4) == 8
    assert configs["cpu"].max_workers == 1
    assert configs["background"].max_workers == 4
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_pool_configs()["io"].max_workers == 20
    assert default_pool_configs()["cpu"].max_workers == 15


def test_environment_overrides_defaults_and_code_overrides_environment() -> None:
    env = {"CASARE_WORKERS_IO": "12", "CASARE_WORKERS_BACKGROUND": " 2 "}
    configs = resolve_pool_configs(None, env)
    assert configs["io"].max_workers == 12
    assert configs["background"].max_workers == 2
    configs = resolve_pool_configs({"io": 3, "db": 2}, env)
    assert configs["io"].max_workers == 3
    assert configs["db"].max_workers == 2


@pytest.mark.parametrize("raw", ["0", "-3", "abc", "1.5"])
def test_invalid_environment_values_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"CASARE_WORKERS_CPU={raw!r}"):
        resolve_pool_configs(None, {"CASARE_WORKERS_CPU": raw})


@pytest.mark.parametrize("spec", [3, PoolConfig(3)])
def test_a_size_given_in_code_wins_over_an_invalid_environment_value(spec: Any) -> None:
    env = {"CASARE_WORKERS_IO": "lots", "CASARE_WORKERS_CPU": "1"}
    configs = resolve_pool_configs({"io": spec}, env)
    assert configs["io"].max_workers == 3  # the variable is not read at all
    assert configs["cpu"].max_workers == 1  # the others still follow the environment
    with pytest.raises(ConfigurationError, match="CASARE_WORKERS_IO='lots'"):
        resolve_pool_configs({"cpu": 2}, env)  # io not given in code: still refused


def test_empty_environment_value_means_default() -> None:
    assert resolve_pool_configs(None, {"CASARE_WORKERS_IO": ""}) == resolve_pool_configs(None, {})


@pytest.mark.parametrize("size", [0, -1, 2.5, "4", True, None])
def test_invalid_sizes_in_code_are_rejected(size: Any) -> None:
    with pytest.raises(ConfigurationError, match="pool 'io'"):
        resolve_pool_configs({"io": size}, {})


@pytest.mark.parametrize("name", ["IO", "1pool", "my-pool", "", 3])
def test_invalid_pool_names_are_rejected(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="pool name"):
        resolve_pool_configs({name: 2}, {})


def test_pool_config_validates_itself() -> None:
    with pytest.raises(ConfigurationError, match="max_workers"):
        PoolConfig(0)
    with pytest.raises(ConfigurationError, match="idle_timeout"):
        PoolConfig(2, idle_timeout=0)


def test_manager_uses_configured_sizes(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASARE_WORKERS_CPU", "3")
    with WorkerManager(pools={"db": PoolConfig(2, idle_timeout=5)}) as manager:
        stats = manager.statistics()
        assert stats["cpu"].max_workers == 3
        assert stats["db"].max_workers == 2
        assert set(manager.pool_names) == {"io", "cpu", "background", "db"}


def test_manager_rejects_bad_shutdown_timeout(qapp: Any) -> None:
    with pytest.raises(ConfigurationError, match="shutdown_timeout"):
        WorkerManager(shutdown_timeout=-1)


def test_cpu_pool_is_a_process_pool_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    cpu = default_pool_configs()["cpu"]
    assert (cpu.kind, cpu.max_workers) == ("process", 3)
    assert default_pool_configs()["io"].kind == "thread"


def test_a_size_override_keeps_the_pool_kind() -> None:
    assert resolve_pool_configs(None, {"CASARE_WORKERS_CPU": "5"})["cpu"].kind == "process"
    configs = resolve_pool_configs({"cpu": 2, "extra": 3}, {})
    assert (configs["cpu"].kind, configs["cpu"].max_workers) == ("process", 2)
    assert configs["extra"].kind == "thread"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "gpu"}, "kind must be one of 'thread', 'process', 'dask'"),
        ({"cancel_grace": -1}, "cancel_grace"),
        ({"kind": "process", "memory_per_worker": 0}, "memory_per_worker"),
        ({"memory_per_worker": 2**30}, "kind='process' pools only"),
        ({"kind": "dask"}, "exactly one of address"),
        ({"kind": "dask", "address": "tcp://h:1", "client": object()}, "exactly one of address"),
        ({"kind": "dask", "address": " "}, "address must be"),
        ({"kind": "dask", "address": "tcp://h:1", "connect_timeout": 0}, "connect_timeout"),
        ({"kind": "dask", "address": "tcp://h:1", "retries": -1}, "retries"),
        ({"address": "tcp://h:1"}, "kind='dask' pools only"),
    ],
)
def test_pool_config_rejects_bad_kind_specific_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        PoolConfig(2, **kwargs)
