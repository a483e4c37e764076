"""The recipes' garbage-collection policy: paused while a run starts, then frozen."""

import gc
import subprocess
import sys
import weakref

import pytest

from pml_hashing.training import collector
from tests.scripts import REPO


@pytest.fixture
def restore_gc():
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()  # the test session is a long-lived process: nothing stays frozen
    gc.enable() if enabled else gc.disable()
    collector._paused = collector._managed = False


def tiny_recipe_flags(output_dir, name: str) -> list[str]:
    """The recipe's flags for a run of a few seconds (digits, 16 bits, a two-layer CNN)."""
    flags = ["--dataset", "digits", "--bits", "16", "--epochs", "1", "--no-progress"]
    flags += ["--backbone-kwargs", "{widths: [8, 16]}", "--output-dir", str(output_dir)]
    return flags + ["--name", name, "--log-with", "none", "--checkpoint-every", "0"]


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_pause_then_freeze_skips_the_start_up_objects_and_collects_later_ones(restore_gc):
    gc.enable()
    collector.pause_collection()
    assert not gc.isenabled()
    early = Node()
    early_ref = weakref.ref(early)
    collector.freeze_and_resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    late = Node()
    late_ref = weakref.ref(late)
    del early, late
    gc.collect()
    assert late_ref() is None  # made after the freeze: collected as usual
    assert early_ref() is not None  # frozen: skipped by every collection
    gc.unfreeze()
    gc.collect()
    assert early_ref() is None
    last = Node()  # made after the run: frozen too when the process is about to exit
    last_ref = weakref.ref(last)
    del last
    collector.freeze_for_exit()
    gc.collect()
    assert last_ref() is not None


def test_a_process_that_never_paused_is_not_frozen_for_exit(restore_gc):
    gc.enable()
    frozen = gc.get_freeze_count()
    collector.freeze_for_exit()
    assert gc.get_freeze_count() == frozen


def test_freeze_without_a_pause_does_nothing(restore_gc):
    gc.enable()
    frozen = gc.get_freeze_count()
    collector.freeze_and_resume()
    assert gc.get_freeze_count() == frozen and gc.isenabled()
    gc.disable()  # turned off by someone else: not ours to turn on
    collector.freeze_and_resume()
    assert not gc.isenabled() and gc.get_freeze_count() == frozen


def test_the_recipe_run_as_a_script_freezes_its_build_and_collects_again(tmp_path):
    flags = tiny_recipe_flags(tmp_path, "gc")
    probe = (
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: print('gc', gc.isenabled(), gc.get_freeze_count()))\n"
        f"sys.argv = [{str(REPO / 'recipes' / 'train.py')!r}, *{flags!r}]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    enabled, frozen = done.stdout.strip().splitlines()[-1].split()[1:]
    assert enabled == "True" and int(frozen) > 100_000  # torch's objects and the build's


def test_the_recipe_called_from_python_leaves_the_collector_alone(tmp_path):
    from tests.scripts import load_file

    recipe = load_file(REPO / "recipes" / "train.py", "train_recipe")
    frozen = gc.get_freeze_count()
    recipe.main(tiny_recipe_flags(tmp_path, "inproc"))
    assert gc.isenabled() and gc.get_freeze_count() == frozen
