"""Pool configuration: the seed note's sizing rules, environment overrides, validation.

Sizes follow the project's seed note (``ExecutorConfig``):

========== ======== ===================================== ==============================
pool       kind     default size                          environment variable
========== ======== ===================================== ==============================
io         threads  ``min(20, cpu_count * 2 + 4)``        ``CASARE_WORKERS_IO``
cpu        threads  ``max(1, cpu_count - 1)``             ``CASARE_WORKERS_CPU``
background threads  ``4``                                 ``CASARE_WORKERS_BACKGROUND``
========== ======== ===================================== ==============================

Precedence: a size passed in code wins; otherwise the environment variable; otherwise
the default.  Extra pools are added in code (``WorkerManager(pools={"db": 3})``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigurationError

__all__ = ("PoolConfig", "default_pool_configs", "resolve_pool_configs")

PoolKind = Literal["thread"]
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_PREFIX = "CASARE_WORKERS_"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """How one named pool is built.

    Attributes:
        max_workers: Upper bound of threads running at once (``>= 1``).
        kind: ``"thread"``; the process and Dask pools add their own kinds.
        idle_timeout: Seconds an idle thread waits for work before it exits.
    """

    max_workers: int
    kind: PoolKind = "thread"
    idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_size("max_workers", self.max_workers)
        if (
            isinstance(self.idle_timeout, bool)
            or not isinstance(self.idle_timeout, int | float)
            or not math.isfinite(self.idle_timeout)
            or self.idle_timeout <= 0
        ):
            raise ConfigurationError(
                f"idle_timeout must be a positive number of seconds, got {self.idle_timeout!r}"
            )


def _check_size(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"{what} must be a whole number of workers (1 or more), "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < 1:
        raise ConfigurationError(f"{what} must be 1 or more, got {value}")
    return value


def _cpu_count() -> int:
    return os.cpu_count() or 1


def default_pool_configs() -> dict[str, PoolConfig]:
    """Return the seed note's three pools sized for this machine (no environment)."""
    cpus = _cpu_count()
    return {
        "io": PoolConfig(min(20, cpus * 2 + 4)),
        "cpu": PoolConfig(max(1, cpus - 1)),
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
    env = os.environ if environ is None else environ
    resolved = default_pool_configs()
    for name, base in list(resolved.items()):
        size = _env_size(name, env)
        if size is not None:
            resolved[name] = PoolConfig(size, base.kind, base.idle_timeout)
    for name, spec in (pools or {}).items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigurationError(
                f"pool name {name!r} is invalid: use lower-case letters, digits and '_', "
                "starting with a letter (for example 'io' or 'db_reads')"
            )
        if isinstance(spec, PoolConfig):
            resolved[name] = spec
        else:
            size = _check_size(f"size of pool {name!r}", spec)
            known = resolved.get(name)
            resolved[name] = PoolConfig(size, "thread", known.idle_timeout if known else 30.0)
    return resolved
