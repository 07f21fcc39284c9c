"""Sessions behind ``./dev``: the demo, lint, type-check and tests on every Python.

Run through ``./dev`` (which installs nox), or directly with ``nox -s <session>``.
"""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHONS = ["3.11", "3.12", "3.13"]
PRIMARY = "3.12"
PYPROJECT = nox.project.load_toml("pyproject.toml")


@nox.session(python=PRIMARY)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (and mypy --strict on the primary Python)."""
    session.install("-e", ".[async,demo,dask]")
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    if session.python == PRIMARY:
        session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
        session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
        session.run("mypy", "casare_workers", "tests", "demo_app", "benchmarks", "noxfile.py")
        build_docs(session)
    session.run(
        "pytest", *session.posargs, env={"QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"}
    )


def build_docs(session: nox.Session) -> None:
    """Build the docs; any warning or unresolved reference fails the build."""
    session.run(
        "sphinx-build",
        "-W",
        "-n",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        env={"QT_QPA_PLATFORM": "offscreen"},
    )


@nox.session(python=PRIMARY)
def docs(session: nox.Session) -> None:
    """Build the documentation into docs/_build/html (what ``./dev docs`` runs)."""
    session.install("-e", ".[async,demo]")
    # The docs group holds everything autodoc imports (pytest, for the plugin's page).
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    build_docs(session)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo app (extra arguments go to the app: ./dev demo --screenshot out.png)."""
    session.install("-e", ".[async,demo]")
    session.run("python", "-m", "demo_app", *session.posargs)


@nox.session(python=PRIMARY)
def bench(session: nox.Session) -> None:
    """casare_workers against the alternatives; writes docs/comparison.md and .png.

    Not part of the test command.  Extra arguments go to the script, e.g.
    ``./dev -s bench -- --repeat 5``.  With ``--hotpath`` first, runs
    ``benchmarks/bench_hotpath.py`` instead (the per-task hot path against a hand-written
    executor bridge; a Markdown report on stdout, nothing written), e.g.
    ``./dev -s bench -- --hotpath --baseline main``.
    """
    session.install("-e", ".[async]")
    if session.posargs[:1] == ["--hotpath"]:
        session.run(
            "python",
            "benchmarks/bench_hotpath.py",
            *session.posargs[1:],
            env={"QT_QPA_PLATFORM": "offscreen"},
        )
        return
    session.install(*nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run(
        "python",
        "benchmarks/bench_compare.py",
        *session.posargs,
        env={"QT_QPA_PLATFORM": "offscreen"},
    )
