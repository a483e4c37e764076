"""Start-up: ``--help``, usage errors and the parsers do not load the heavy libraries.

Each check runs in a fresh interpreter (this test process has imported everything already)
and reads ``sys.modules`` at the end: a module imported at the top of a file where a
function would do is caught here, not by a timing.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Loaded where they are used (training, indexes, compiled kernels, plots, export, trackers),
# never by ``import pml_hashing``, the recipe's parser or the command line's parser.
HEAVY = (
    "timm",
    "faiss",
    "numba",
    "matplotlib",
    "onnx",
    "accelerate",
    "sklearn",
    "tensorboard",
    "wandb",
    "mlflow",
)


def heavy_modules_after(code: str, heavy=HEAVY) -> list[str]:
    """Run ``code`` in a new interpreter; the ``heavy`` modules it left in ``sys.modules``."""
    report = f"""
import json, sys
print("HEAVY=" + json.dumps(sorted(m for m in {tuple(heavy)!r} if m in sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code + report],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY="))
    return json.loads(line.removeprefix("HEAVY="))


def test_import_and_both_parsers_load_no_heavy_module():
    code = """
import runpy
import pml_hashing
import pml_hashing.training
from pml_hashing.cli import make_parser
recipe = runpy.run_path("recipes/train.py", run_name="recipe")
recipe["build_parser"]().format_help()
make_parser().format_help()
"""
    assert heavy_modules_after(code) == []


def test_import_of_the_package_loads_not_even_torch():
    assert heavy_modules_after("import pml_hashing", heavy=("torch", *HEAVY)) == []


# The methods' files import pytorch-metric-learning, which imports scipy.stats (about a
# second): the recipe's --help and a bad value of a built-in key need neither. A name that
# is not built in reads the registry itself (it may be a plugin's).
NAMES_ONLY = ("pytorch_metric_learning", "scipy")


@pytest.mark.parametrize(
    "argv, status, heavy",
    [
        (["--help"], 0, HEAVY + NAMES_ONLY),
        (["--bits", "7"], 2, HEAVY + NAMES_ONLY),  # a usage error before anything is built
        (["--method", "dpn", "--bits", "7"], 2, HEAVY + NAMES_ONLY),
        (["--method", "no-such-method"], 2, HEAVY),
    ],
)
def test_recipe_help_and_usage_errors_load_no_heavy_module(argv, status, heavy):
    code = f"""
import runpy, sys
sys.argv = ["recipes/train.py", *{argv!r}]
try:
    runpy.run_path("recipes/train.py", run_name="__main__")
except SystemExit as stop:
    assert stop.code == {status}, stop.code
else:
    raise AssertionError("the recipe did not exit")
"""
    assert heavy_modules_after(code, heavy) == []


def test_the_names_listed_for_help_are_the_registries_built_in_names():
    code = """
import json
from pml_hashing.training.config import _method_names, _target_miner_names
listed = [list(_method_names.builtin), list(_target_miner_names.builtin)]
from pml_hashing.methods import METHODS, TARGET_MINERS
print("NAMES=" + json.dumps([listed, [sorted(METHODS), sorted(TARGET_MINERS)]]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("NAMES="))
    listed, registered = json.loads(line.removeprefix("NAMES="))
    assert listed == registered


def test_a_method_registered_before_parsing_is_accepted_by_the_recipe_flags():
    from pml_hashing.methods import METHODS, DPNMethod, register_method
    from pml_hashing.training.config import build_parser

    register_method("dpnplugintest", DPNMethod)
    try:
        args = build_parser().parse_args(["--method", "dpnplugintest"])
        assert args.method == "dpnplugintest"
        assert "dpnplugintest" in build_parser().format_help()
    finally:
        METHODS.unregister("dpnplugintest")


@pytest.mark.parametrize(
    "argv, status",
    [
        (["--help"], 0),
        (["index", "build", "--help"], 0),
        (["index", "build"], 2),  # a required argument missing
    ],
)
def test_command_line_help_and_usage_errors_load_no_heavy_module(argv, status):
    code = f"""
from pml_hashing.cli import main
try:  # argparse exits; the command's own usage checks return the status for sys.exit
    result = main({argv!r})
except SystemExit as stop:
    result = stop.code
assert result == {status}, result
"""
    assert heavy_modules_after(code) == []


def test_heavy_modules_still_load_where_they_are_used():
    # The check above must be able to fail: the same report sees them once used.
    code = """
from pml_hashing.index import BinaryIndex
BinaryIndex(16)
from pml_hashing.training import Trainer
from pml_hashing.models import HashingModel
HashingModel("resnet18", 16)
"""
    found = heavy_modules_after(code)
    assert {"faiss", "timm", "accelerate"} <= set(found)


def test_the_package_backbone_trains_without_timm_and_is_registered_when_timm_loads():
    # The main job's backbone is the package's own: a run never pays timm's import (it
    # loads torchvision); timm, imported later, still creates it by name.
    code = """
import tempfile
from pml_hashing.training import run_experiment
config = dict(dataset="digits", bits=16, epochs=1, max_train_steps=2, log_with="none",
              progress=False, backbone_kwargs={"widths": [8, 16]},
              output_dir=tempfile.mkdtemp())
run_experiment(config)
"""
    assert heavy_modules_after(code, ("timm", "torchvision")) == []
    code = """
import torch
import pml_hashing.models
import timm
model = timm.create_model("hashing_cnn_small", num_classes=0, in_chans=1, widths=(8, 16))
assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 16)
"""
    assert heavy_modules_after(code, ("timm",)) == ["timm"]


def test_evaluate_recipe_help_loads_no_heavy_module():
    code = """
import runpy, sys
sys.argv = ["recipes/evaluate.py", "--help"]
try:
    runpy.run_path("recipes/evaluate.py", run_name="__main__")
except SystemExit as stop:
    assert stop.code == 0, stop.code
"""
    assert heavy_modules_after(code) == []
