"""Ports of the first user's long jobs to casare_workers, as runnable examples.

* :mod:`demo_app.ports.migration`: the migration worker (an async use case awaited step
  by step, a business failure as a result, cancel between steps with a rollback);
  ``python -m demo_app.ports.migration``.
* :mod:`demo_app.ports.installer`: the installer worker (a subprocess streaming lines,
  ``(success, message)`` exactly as the app shows it, cancel on dialog close);
  ``python -m demo_app.ports.installer``.

Each module starts with the code it replaces, and why, in its docstring.
"""
