"""One registry idiom: methods, target miners and protocols register themselves by name."""

import dataclasses
import warnings

import pytest
import torch

from pml_hashing.data import (
    FILE_PROTOCOLS,
    PROTOCOL_NAMES,
    PROTOCOLS,
    load_protocol,
    protocol_info,
    register_protocol,
)
from pml_hashing.methods import (
    METHODS,
    TARGET_MINERS,
    ClassifierMethod,
    CSQMethod,
    DPNMethod,
    ITQMethod,
    LSHMethod,
    OrthoHashMethod,
    PairwiseMethod,
    ProtocolInfo,
    SHBDNNMethod,
    UHBDNNMethod,
    build_method,
    create_method,
    create_target_miner,
    method_config_arguments,
    register_method,
)
from pml_hashing.miners import (
    AdaptiveTargetMiner,
    HadamardTargetMiner,
    HashCenterTargetMiner,
    MaxHammingDistanceTargetMiner,
    RandomTargetMiner,
)
from pml_hashing.registry import Registry, RegistryOverwriteWarning
from pml_hashing.training import ExperimentConfig


class First:
    pass


class Second:
    pass


def test_registry_is_a_read_only_mapping_of_what_was_registered():
    registry = Registry("widget", "widget")
    assert registry.register("a", First, size=3) is First

    @registry.register("b")
    class Decorated:
        pass

    assert dict(registry) == {"a": First, "b": Decorated}
    assert "a" in registry and len(registry) == 2 and sorted(registry) == ["a", "b"]
    assert registry.info("a") == {"size": 3}
    with pytest.raises(TypeError):
        registry["c"] = Second  # a Mapping, not a dict: entries come through register
    with pytest.raises(TypeError):
        registry.info("a")["size"] = 4


def test_registering_a_taken_name_warns_then_replaces():
    registry = Registry("widget", "widget")
    registry.register("a", First)
    with pytest.warns(RegistryOverwriteWarning, match=r"widget 'a' is already registered"):
        registry.register("a", Second)
    assert registry["a"] is Second


def test_overwrite_false_refuses_and_keeps_the_old_entry():
    registry = Registry("widget", "widget")
    registry.register("a", First)
    with pytest.raises(ValueError, match=r"widget 'a' is already registered.*overwrite=True"):
        registry.register("a", Second, overwrite=False)
    assert registry["a"] is First


def test_overwrite_true_replaces_quietly_and_same_object_is_not_a_duplicate():
    registry = Registry("widget", "widget")
    registry.register("a", First)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("a", First)  # the same object again (a re-import): no warning
        registry.register("a", Second, overwrite=True)
    assert registry["a"] is Second


def test_unknown_name_lists_the_choices():
    registry = Registry("widget", "kind")
    registry.register("b", First)
    registry.register("a", Second)
    with pytest.raises(ValueError, match=r"^kind must be one of \['a', 'b'\]; got 'c'$"):
        registry.get_or_raise("c")
    with pytest.raises(ValueError, match="kind must be one of"):
        registry.create("c")
    with pytest.raises(ValueError, match="kind must be one of"):
        registry.info(["unhashable"])


@pytest.mark.parametrize("bad", ["", None, 3])
def test_a_name_must_be_a_non_empty_string(bad):
    with pytest.raises(TypeError, match="non-empty string"):
        Registry("widget", "widget").register(bad, First)


def test_every_component_registered_itself_in_its_own_file():
    assert dict(METHODS) == {
        "dpn": DPNMethod,
        "sh-bdnn": SHBDNNMethod,
        "uh-bdnn": UHBDNNMethod,
        "classifier": ClassifierMethod,
        "lsh": LSHMethod,
        "itq": ITQMethod,
        "csq": CSQMethod,
        "orthohash": OrthoHashMethod,
        "pairwise": PairwiseMethod,
    }
    assert dict(TARGET_MINERS) == {
        "random": RandomTargetMiner,
        "hadamard": HadamardTargetMiner,
        "hash-center": HashCenterTargetMiner,
        "max-hamming": MaxHammingDistanceTargetMiner,
        "adaptive": AdaptiveTargetMiner,
    }
    assert PROTOCOL_NAMES == tuple(PROTOCOLS)
    assert set(PROTOCOL_NAMES) == {
        "mnist-5k",
        "digits",
        "cifar10-1",
        "cifar10-2",
        "nuswide-21",
        "imagenet-100",
        "image-folder",
    }
    assert set(FILE_PROTOCOLS) == {
        "cifar10-1",
        "cifar10-2",
        "nuswide-21",
        "imagenet-100",
        "image-folder",
    }
    for name in PROTOCOL_NAMES:
        info = protocol_info(name)
        # grey bundled tensors vs RGB image files read through the backbone's transform
        assert info.in_chans == (3 if name in FILE_PROTOCOLS else 1)
        assert info.needs_root == info.takes_transform == (name in FILE_PROTOCOLS)


def test_create_functions_dispatch_through_the_registries():
    assert isinstance(create_method("dpn", 10, 16), DPNMethod)
    assert isinstance(create_target_miner("max-hamming", 4, 8), MaxHammingDistanceTargetMiner)
    protocol = load_protocol("digits", seed=1, query_per_class=5)
    assert protocol.name == "digits" and len(protocol.query) == 50 and protocol.in_chans == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: create_method("dpnn", 10, 16), "method must be one of"),
        (lambda: create_target_miner("hadamart", 10, 16), "target_miner must be one of"),
        (lambda: load_protocol("cifar-10"), "dataset must be one of"),
        (lambda: protocol_info("cifar-10"), "dataset must be one of"),
    ],
)
def test_unknown_component_names_are_value_errors_listing_the_choices(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_new_method_registers_without_editing_any_central_file():
    class TinyMethod(DPNMethod):
        name = "tiny"

    try:
        register_method("tiny-test-method", TinyMethod)
        assert isinstance(create_method("tiny-test-method", 3, 8), TinyMethod)
        with pytest.raises(ValueError, match="already registered"):
            register_method("tiny-test-method", DPNMethod, overwrite=False)
    finally:
        METHODS.unregister("tiny-test-method")
    assert "tiny-test-method" not in METHODS
    with pytest.raises(ValueError, match="tiny-test-method"):
        create_method("tiny-test-method", 3, 8)


def test_a_new_protocol_dispatches_with_its_facts():
    calls = []

    @register_protocol("tiny-test-protocol", in_chans=2, needs_root=True, takes_transform=False)
    def load_tiny(root=None, seed=0, split_file=None, **kwargs):
        calls.append((root, seed, split_file, kwargs))
        return "protocol"

    try:
        assert load_protocol("tiny-test-protocol", root="/data", seed=3, query_size=4) == "protocol"
        assert calls == [("/data", 3, None, {"query_size": 4})]
        assert protocol_info("tiny-test-protocol").in_chans == 2
    finally:
        PROTOCOLS.unregister("tiny-test-protocol")
    assert "tiny-test-protocol" not in PROTOCOLS


# ----------------------------------------------------------------------------- from_config


# A config and the arguments its method is built with: the config's fields reach the
# method (margin, seed) and its target miner (p, the adaptive schedule) unless
# method_kwargs says otherwise; what only the data knows (the training-set size, the input
# features of UH-BDNN's decoder) comes from the protocol (digits: 797 training items, 64
# features).
CONFIGS = [
    (
        dict(method="dpn"),
        dict(seed=0, target_miner="random", target_miner_kwargs={"p": 0.5}, margin=1.0),
    ),
    (
        dict(method="dpn", target_miner="adaptive", p=0.3, update_every=2, margin=0.5, seed=4),
        dict(
            seed=4,
            target_miner="adaptive",
            target_miner_kwargs={
                "p": 0.3,
                "update_every": 2,
                "warmup_epochs": 2,
                "min_distance_floor": "initial",
            },
            margin=0.5,
        ),
    ),
    (
        dict(method="dpn", target_miner="hadamard"),
        dict(seed=0, target_miner="hadamard", target_miner_kwargs={}, margin=1.0),
    ),
    (
        dict(method="dpn", target_miner="max-hamming", p=0.2),  # p is not the miner's
        dict(seed=0, target_miner="max-hamming", target_miner_kwargs={}, margin=1.0),
    ),
    (
        dict(method="dpn", method_kwargs={"target_miner_kwargs": {"p": 0.1}}),
        dict(seed=0, target_miner="random", target_miner_kwargs={"p": 0.1}, margin=1.0),
    ),
    (
        dict(method="sh-bdnn", seed=2, method_kwargs={"l3": 0.0}),
        dict(l3=0.0, seed=2, num_train=797),
    ),
    (dict(method="sh-bdnn", method_kwargs={"num_train": 50}), dict(num_train=50, seed=0)),
    (
        dict(method="uh-bdnn", method_kwargs={"num_sweeps": 2}),
        dict(num_sweeps=2, seed=0, num_train=797, input_dim=64),
    ),
]


@pytest.fixture(scope="module")
def digits():
    return load_protocol("digits", seed=0)


@pytest.mark.parametrize("values,expected", CONFIGS, ids=[str(c) for c, _ in CONFIGS])
def test_a_method_builds_from_its_config_with_the_config_and_data_arguments(
    values, expected, digits
):
    assert len(digits.train) == 797 and digits.train[0][0].numel() == 64
    config = ExperimentConfig.from_dict(dict(bits=16, **values))
    assert method_config_arguments(config, digits) == expected
    method = build_method(config, digits)
    assert type(method) is METHODS[config.method] and method.config_kwargs == expected
    reference = create_method(config.method, digits.num_classes, config.bits, **expected)
    state, reference_state = method.state_dict(), reference.state_dict()
    assert state.keys() == reference_state.keys()
    for key in state:
        assert torch.equal(state[key], reference_state[key]), key


def test_from_config_takes_protocol_info_instead_of_a_protocol(digits):
    config = ExperimentConfig.from_dict(dict(method="uh-bdnn", bits=8))
    facts = ProtocolInfo(
        "digits", 1, False, False, num_classes=10, num_train=len(digits.train), input_dim=64
    )
    assert ProtocolInfo.of(digits) == facts
    method = UHBDNNMethod.from_config(config, facts)
    assert method.codes.shape == (len(digits.train), 8)
    with pytest.raises(ValueError, match="input_dim"):
        UHBDNNMethod.from_config(config, dataclasses.replace(facts, input_dim=None))


def test_from_config_refuses_an_unknown_target_miner_before_building(digits):
    config = ExperimentConfig.from_dict(dict(method="dpn", bits=8))
    config.target_miner = "hadamart"
    with pytest.raises(ValueError, match="target_miner must be one of"):
        build_method(config, digits)
