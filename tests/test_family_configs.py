"""CSQ's and OrthoHash's published cells each have a recipe config that loads and builds."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from pml_hashing.methods import create_method, hash_batchnorm_of, method_config_arguments
from pml_hashing.methods.base import ProtocolInfo
from pml_hashing.training import ExperimentConfig

REPO = Path(__file__).resolve().parents[1]


def generator():
    path = REPO / "benchmarks" / "results_recipe_configs.py"
    spec = importlib.util.spec_from_file_location("results_recipe_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CELLS = [
    (method, dataset, bits, number)
    for (method, dataset), numbers in generator().FAMILY_PUBLISHED.items()
    for bits, number in zip(generator().FAMILY_BITS, numbers, strict=True)
]


@pytest.mark.parametrize(("method", "dataset", "bits", "number"), CELLS)
def test_every_published_family_cell_has_a_config_with_its_number(method, dataset, bits, number):
    path = REPO / "recipes" / "configs" / f"{dataset}_{method}_{bits}.yaml"
    text = path.read_text()
    assert f"{number:.3f}" in text.splitlines()[0]
    config = ExperimentConfig.from_dict(yaml.safe_load(text), source=str(path))
    assert (config.method, config.dataset, config.bits) == (method, dataset, bits)
    # the method builds from the config (a GPU is needed for the data and the training only)
    num_classes = {"imagenet-100": 100, "nuswide-21": 21}[dataset]
    kwargs = method_config_arguments(
        config, ProtocolInfo(dataset, 3, num_classes=num_classes, num_train=10)
    )
    built = create_method(method, num_classes, bits, **kwargs)
    assert built.target_miner.targets.shape == (num_classes, bits)
    assert hash_batchnorm_of(config) is (method == "orthohash")
