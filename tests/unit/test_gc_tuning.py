"""A booted worker process collects garbage rarely, and never scans what it had at boot."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_booted_worker_freezes_its_boot_objects_and_collects_less_often():
    # In a fresh interpreter: tuning changes the whole process's collector.
    script = textwrap.dedent(
        """
        import gc
        from worker.gc_tuning import THRESHOLDS, tune

        assert gc.get_freeze_count() == 0 and gc.get_threshold() != THRESHOLDS
        tune()
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen            # the imported modules, classes and schemas
        assert gc.get_threshold() == THRESHOLDS
        tune()                                  # a second worker booting in the same process
        assert gc.get_freeze_count() == frozen
        cycle = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1                # cycles are still collected
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
