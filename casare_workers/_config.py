"""Pool configuration: default sizes per machine, environment overrides, validation.

Default sizes: the I/O pool has more threads than cores, since its work mostly waits
(about ``cores * (1 + wait / compute)``, capped); the CPU pool one process per core but
one, headroom for the GUI thread; a few threads for light background chores:

========== ========= ===================================== ==============================
pool       kind      default size                          environment variable
========== ========= ===================================== ==============================
io         thread    ``min(20, cpu_count * 2 + 4)``        ``CASARE_WORKERS_IO``
cpu        process   ``max(1, cpu_count - 1)``             ``CASARE_WORKERS_CPU``
background thread    ``4``                                 ``CASARE_WORKERS_BACKGROUND``
========== ========= ===================================== ==============================

Precedence: a size passed in code wins; otherwise the environment variable; otherwise
the default.  Extra pools are added in code (``WorkerManager(pools={"db": 3})``); a
size given for an existing pool keeps that pool's kind.

Kinds: ``"thread"`` (daemon threads, ``_pools._threadpool``), ``"process"`` (worker
processes that survive crashes, ``_pools._processpool``; for CPU-bound work such as
OCR, image comparison and PDF parsing, which the GIL would serialise on threads) and
``"dask"`` (a Dask cluster, ``_pools._daskpool``; needs the ``casare_workers[dask]``
extra).  ``_pools._pool.build_pool`` maps a kind to its class.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from ._errors import ConfigurationError
from ._validation import check_seconds, check_size

__all__ = ("PoolConfig", "default_pool_configs", "resolve_pool_configs")

PoolKind = Literal["thread", "process", "dask"]
POOL_KINDS: tuple[str, ...] = get_args(PoolKind)
#: Seconds an idle worker *process* of the default "cpu" pool lives: starting one costs
#: a fresh interpreter and the imports of the task's module (0.2-0.5 s measured).
CPU_IDLE_TIMEOUT = 300.0
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_PREFIX = "CASARE_WORKERS_"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """How one named pool is built.

    Attributes:
        max_workers: Upper bound of tasks running at once (``>= 1``): threads for a
            thread pool, worker processes for a process pool, tasks handed to the
            cluster at once for a Dask pool.
        kind: ``"thread"``, ``"process"`` or ``"dask"``.
        idle_timeout: Seconds an idle thread or worker process waits for work before it
            exits (the next task starts a new one).
        cancel_grace: Process pools: seconds a cancelled or timed-out task gets to stop
            by itself (it sees ``ctx.cancelled``) before its worker process is killed
            and replaced.
        memory_per_worker: Process pools: bytes one worker process needs.  When given,
            the pool runs at most ``available_memory / (memory_per_worker * 1.5)``
            processes (each counted at 1.5 times its need: a process also carries its
            own interpreter; at least 1), measured when it is built.
        address: Dask pools: the scheduler's address, e.g. ``"tcp://10.0.0.5:8786"``.
        client: Dask pools: an existing synchronous ``distributed.Client`` to use
            instead of an address (the pool does not close it).
        retries: Dask pools: how many times Dask re-runs a task that raised.
        connect_timeout: Dask pools: seconds to wait for the scheduler when connecting.

    Example:
        >>> WorkerManager(pools={                                   # doctest: +SKIP
        ...     "ocr": PoolConfig(3, kind="process", cancel_grace=5),
        ...     "cluster": PoolConfig(32, kind="dask", address="tcp://10.0.0.5:8786"),
        ... })
    """

    max_workers: int
    kind: PoolKind = "thread"
    idle_timeout: float = 30.0
    cancel_grace: float = 2.0
    memory_per_worker: int | None = None
    address: str | None = None
    client: Any = None
    retries: int = 0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_size("max_workers", self.max_workers)
        if self.kind not in POOL_KINDS:
            raise ConfigurationError(
                f"kind must be one of {', '.join(map(repr, POOL_KINDS))}, got {self.kind!r}"
            )
        check_seconds("idle_timeout", self.idle_timeout, allow_zero=False)
        check_seconds("cancel_grace", self.cancel_grace, allow_zero=True)
        if self.memory_per_worker is not None:
            if self.kind != "process":
                raise ConfigurationError("memory_per_worker applies to kind='process' pools only")
            if (
                isinstance(self.memory_per_worker, bool)
                or not isinstance(self.memory_per_worker, int)
                or self.memory_per_worker < 1
            ):
                raise ConfigurationError(
                    "memory_per_worker must be a positive number of bytes "
                    f"(e.g. 512 * 2**20), got {self.memory_per_worker!r}"
                )
        if self.kind == "dask":
            if (self.address is None) == (self.client is None):
                raise ConfigurationError(
                    "a kind='dask' pool needs exactly one of address= (the scheduler, "
                    "e.g. 'tcp://10.0.0.5:8786') or client= (an existing distributed.Client)"
                )
            if self.address is not None and (
                not isinstance(self.address, str) or not self.address.strip()
            ):
                raise ConfigurationError(
                    f"address must be the scheduler's address as a string, got {self.address!r}"
                )
        elif self.address is not None or self.client is not None:
            raise ConfigurationError(
                f"address= and client= apply to kind='dask' pools only (this pool is "
                f"kind={self.kind!r})"
            )
        check_seconds("connect_timeout", self.connect_timeout, allow_zero=False)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {self.retries!r}")


def _cpu_count() -> int:
    return os.cpu_count() or 1


def default_pool_configs() -> dict[str, PoolConfig]:
    """Return the three default pools sized for this machine (no environment)."""
    cpus = _cpu_count()
    return {
        "io": PoolConfig(min(20, cpus * 2 + 4)),
        "cpu": PoolConfig(max(1, cpus - 1), kind="process", idle_timeout=CPU_IDLE_TIMEOUT),
        "background": PoolConfig(4),
    }


def _env_size(name: str, environ: Mapping[str, str]) -> int | None:
    var = ENV_PREFIX + name.upper()
    raw = environ.get(var)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(
            f"environment variable {var}={raw!r} is not a whole number; "
            f"set it to the number of workers for the {name!r} pool (1 or more) or unset it"
        ) from None
    if value < 1:
        raise ConfigurationError(
            f"environment variable {var}={raw!r} must be 1 or more; "
            f"set it to the number of workers for the {name!r} pool or unset it"
        )
    return value


def resolve_pool_configs(
    pools: Mapping[str, int | PoolConfig] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, PoolConfig]:
    """Combine code, environment and defaults into the manager's pool table.

    Args:
        pools: Pool name to a size or a full ``PoolConfig``.  Names not listed keep the
            defaults; new names add pools.
        environ: The environment to read (``os.environ`` by default).

    Raises:
        ConfigurationError: A name, size or environment value is invalid; the message
            names the culprit and the accepted values.
    """
    if pools is not None and not isinstance(pools, Mapping):
        # Else a list of pairs, a common slip, fails deep inside with an AttributeError.
        raise ConfigurationError(
            f"pools must be a mapping of pool name to size or PoolConfig, got "
            f"{type(pools).__name__}; e.g. pools={{'io': 8, 'cpu': PoolConfig(2, kind='process')}}"
        )
    env = os.environ if environ is None else environ
    resolved = default_pool_configs()
    given = pools or {}
    for name, base in list(resolved.items()):
        if name in given:
            continue  # a size given in code wins: the variable is not even read
        size = _env_size(name, env)
        if size is not None:
            resolved[name] = replace(base, max_workers=size)
    for name, spec in given.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigurationError(
                f"pool name {name!r} is invalid: use lower-case letters, digits and '_', "
                "starting with a letter (for example 'io' or 'db_reads')"
            )
        if isinstance(spec, PoolConfig):
            resolved[name] = spec
        else:
            size = check_size(f"size of pool {name!r}", spec)
            known = resolved.get(name)
            resolved[name] = (
                PoolConfig(size) if known is None else replace(known, max_workers=size)
            )
    return resolved
