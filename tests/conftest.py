"""Test-wide settings."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # plots are written to files, never shown
# The tests download nothing: a Hugging Face Hub call fails at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Hypothesis's per-example deadline measures the machine, not the code: on a loaded
# 2-core CI machine it fails correct properties. The number of examples stays the default.
settings.register_profile(
    "pml-hashing", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("pml-hashing")

import pytest  # noqa: E402


def _tiny_config(output_dir, **overrides) -> dict:
    """A run of a few seconds on a CPU: DPN at 16 bits on digits with a two-layer CNN."""
    config = dict(
        name="tiny",
        output_dir=str(output_dir),
        dataset="digits",
        bits=16,
        backbone_kwargs={"widths": [8, 16]},
        epochs=2,
        batch_size=64,
        log_with="none",
        progress=False,
        eval_batch_size=256,
    )
    config.update(overrides)
    return config


@pytest.fixture
def tiny_config():
    """``tiny_config(output_dir, **overrides)``: the config dict of a tiny training run."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The folder of one finished tiny run (1 epoch, no resumable states), trained once for
    the tests that only read it (its checkpoint, its codes)."""
    from pml_hashing.training import run_experiment

    folder = tmp_path_factory.mktemp("tiny-run")
    run_experiment(_tiny_config(folder, epochs=1, checkpoint_every=0))
    return folder / "tiny"
