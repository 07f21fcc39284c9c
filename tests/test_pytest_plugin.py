from __future__ import annotations

import pytest


def test_manager_fixture_passes_clean_tests_and_fails_leftovers(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import os\nos.environ.setdefault('QT_QPA_PLATFORM', 'offscreen')\n")
    pytester.makepyfile(
        """
        from casare_workers.pytest_plugin import (
            assert_gui_thread, assert_worker_thread, wait_for_handle,
        )

        def test_clean(manager, qtbot):
            def work():
                assert_worker_thread()
                return 4
            handle = manager.submit(work)
            with qtbot.waitSignal(handle.signals.finished, timeout=5000):
                pass
            assert_gui_thread()
            assert handle.result(0) == 4

        def test_leaves_a_task_running(manager):
            manager.submit(lambda ctx: ctx.wait(30))

        def test_is_the_default_manager(manager, qtbot):
            from casare_workers import LongJob, default_manager

            assert default_manager() is manager
            job = LongJob(lambda: 1)  # no manager=: the test's manager tracks it
            job.start()
            assert job in manager.live_jobs()
            qtbot.waitUntil(manager.is_idle, timeout=5000)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*the test left work behind: tasks not delivered*"])
