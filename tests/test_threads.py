"""The thread rule of pml_hashing.training.threads (accelerate launch writes OMP_NUM_THREADS=1)."""

import os

import pytest
import torch

from pml_hashing.training import threads
from pml_hashing.training.threads import configure_threads, resolve_num_threads

ACCELERATE = {"ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_MIXED_PRECISION": "no"}


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cores


def expected(env, cores, num_threads=None):
    """The rule written out plainly."""
    if num_threads is not None:
        return num_threads
    if env.get("PML_HASHING_NUM_THREADS"):
        return int(env["PML_HASHING_NUM_THREADS"])
    omp = env.get("OMP_NUM_THREADS")
    if omp and not ("ACCELERATE_DYNAMO_BACKEND" in env and omp == "1"):
        return int(omp)
    return max(1, cores // int(env.get("LOCAL_WORLD_SIZE", "1")))


@pytest.mark.parametrize("num_cores", [1, 2, 7, 32])
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OMP_NUM_THREADS": "1"},  # the user's own 1, outside accelerate: kept
        {"OMP_NUM_THREADS": "3"},
        {**ACCELERATE, "OMP_NUM_THREADS": "1"},  # accelerate's default: replaced
        {**ACCELERATE, "OMP_NUM_THREADS": "4"},  # --num_cpu_threads_per_process 4: kept
        {**ACCELERATE, "OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"},
        {**ACCELERATE, "OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "64"},
        {**ACCELERATE, "OMP_NUM_THREADS": "1", "PML_HASHING_NUM_THREADS": "1"},
        {"PML_HASHING_NUM_THREADS": "5", "OMP_NUM_THREADS": "2"},
    ],
)
def test_rule_against_plain_reference(cores, env, num_cores):
    cores(num_cores)
    got, _ = resolve_num_threads(environ=env)
    assert got == expected(env, num_cores)
    assert resolve_num_threads(3, environ=env) == (3, "num_threads")


def test_accelerate_default_uses_the_cores(cores):
    cores(6)
    assert resolve_num_threads(environ={**ACCELERATE, "OMP_NUM_THREADS": "1"}) == (6, "cores")


@pytest.mark.parametrize(
    "env, name",
    [
        ({"PML_HASHING_NUM_THREADS": "0"}, "PML_HASHING_NUM_THREADS"),
        ({"PML_HASHING_NUM_THREADS": "two"}, "PML_HASHING_NUM_THREADS"),
        ({"OMP_NUM_THREADS": "-1"}, "OMP_NUM_THREADS"),
        ({"LOCAL_WORLD_SIZE": "1.5"}, "LOCAL_WORLD_SIZE"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        resolve_num_threads(environ=env)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_num_threads(bad):
    with pytest.raises(ValueError, match="num_threads"):
        resolve_num_threads(bad, environ={})


def test_configure_threads_sets_torch(monkeypatch, cores):
    before = torch.get_num_threads()
    cores(3)
    monkeypatch.setattr(threads.os, "environ", {**ACCELERATE, "OMP_NUM_THREADS": "1"})
    try:
        assert configure_threads() == 3
        assert torch.get_num_threads() == 3
        assert configure_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_config_key_is_validated():
    from pml_hashing.training import ExperimentConfig

    with pytest.raises(ValueError, match="num_threads"):
        ExperimentConfig(num_threads=0).validate()
    assert ExperimentConfig(num_threads=2).num_threads == 2
