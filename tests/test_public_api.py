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
