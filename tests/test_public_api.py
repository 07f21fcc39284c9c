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
    for info in pkgutil.iter_modules(casare_workers.__path__):
        module = importlib.import_module(f"casare_workers.{info.name}")
        assert isinstance(getattr(module, "__all__", None), tuple), info.name
