"""--method csq / orthohash / pairwise: built from a config, trained by the one loop, and the
hash layer's batch norm option of HashingModel."""

import pytest
import torch
from pytorch_metric_learning import losses

from pml_hashing.losses import CSQLoss, OrthoHashLoss
from pml_hashing.methods import (
    CSQMethod,
    OrthoHashMethod,
    PairwiseMethod,
    build_method,
    hash_batchnorm_of,
)
from pml_hashing.methods.base import ProtocolInfo
from pml_hashing.miners import HashCenterTargetMiner, MaxHammingDistanceTargetMiner
from pml_hashing.models import HashingModel
from pml_hashing.training import ExperimentConfig, load_checkpoint, run_experiment
from pml_hashing.training.config import build_parser

FACTS = ProtocolInfo("toy", 1, num_classes=10, num_train=100)


def config(**values):
    return ExperimentConfig.from_dict(dict(bits=16, **values))


def test_csq_from_config_takes_its_weight_and_any_target_miner():
    method = build_method(
        config(method="csq", target_miner="hash-center", quantization_weight=0.05), FACTS
    )
    assert isinstance(method, CSQMethod) and isinstance(method.loss, CSQLoss)
    assert method.loss.quantization_weight == 0.05
    assert isinstance(method.target_miner, HashCenterTargetMiner)
    other = build_method(config(method="csq", target_miner="max-hamming"), FACTS)
    assert isinstance(other.target_miner, MaxHammingDistanceTargetMiner)
    assert other.loss.quantization_weight == 1e-4  # DeepHash-pytorch's lambda


def test_orthohash_from_config_takes_scale_and_cosine_margin():
    method = build_method(config(method="orthohash", scale=16.0, cosine_margin=0.4), FACTS)
    assert isinstance(method, OrthoHashMethod) and isinstance(method.loss, OrthoHashLoss)
    assert (method.loss.scale, method.loss.margin) == (16.0, 0.4)


@pytest.mark.parametrize(
    ("pair_loss", "expected"),
    [("contrastive", losses.ContrastiveLoss), ("multi-similarity", losses.MultiSimilarityLoss)],
)
def test_pairwise_is_a_pml_pair_loss_with_the_quantization_regularizer(pair_loss, expected):
    method = build_method(config(method="pairwise", pair_loss=pair_loss), FACTS)
    assert isinstance(method, PairwiseMethod) and type(method.loss) is expected
    assert method.loss.embedding_reg_weight == 0.01
    outputs = torch.randn(12, 16, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(12) % 3
    got = method.compute_loss(outputs, labels, None, None)
    plain = expected()(outputs, labels)  # PML's loss alone, no regularizer
    quantization = ((outputs.abs() - 1) ** 2).sum(dim=1).mean()  # sum_k (|v_k| - 1)^2
    torch.testing.assert_close(got, plain + 0.01 * quantization)


def test_pairwise_refuses_multi_hot_labels_naming_why():
    method = PairwiseMethod(3, 16)
    with pytest.raises(ValueError, match="integer labels"):
        method.compute_loss(torch.randn(4, 16), torch.ones(4, 3), None, None)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        (dict(method="dpn", scale=4.0), "scale"),
        (dict(method="csq", cosine_margin=0.3), "cosine_margin"),
        (dict(method="orthohash", pair_loss="multi-similarity"), "pair_loss"),
        (dict(method="orthohash", quantization_weight=0.1), "quantization_weight"),
        (dict(method="sh-bdnn", target_miner="hash-center"), "target_miner"),
        (dict(method="pairwise", pair_loss="triplet"), "pair_loss"),
    ],
)
def test_a_key_of_another_method_is_refused_naming_it(values, key):
    with pytest.raises(ValueError, match=key):
        config(**values)


def test_run_names_carry_the_codebook_of_every_target_code_method():
    assert config(method="csq", target_miner="hash-center").run_name() == (
        "mnist-5k-csq-hash-center-16b-seed0"
    )
    assert config(method="orthohash").run_name() == "mnist-5k-orthohash-random-16b-seed0"
    assert config(method="pairwise").run_name() == "mnist-5k-pairwise-16b-seed0"


def test_flags_reach_the_new_keys():
    args = vars(
        build_parser().parse_args(
            ["--method", "orthohash", "--scale", "4", "--cosine-margin", "0.1",
             "--no-hash-batchnorm"]
        )
    )  # fmt: skip
    assert args == {
        "method": "orthohash",
        "scale": 4.0,
        "cosine_margin": 0.1,
        "hash_batchnorm": False,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (dict(method="orthohash"), True),
        (dict(method="orthohash", hash_batchnorm=False), False),
        (dict(method="dpn"), False),
        (dict(method="csq", hash_batchnorm=True), True),
    ],
)
def test_hash_batchnorm_is_the_methods_default_unless_set(values, expected):
    assert hash_batchnorm_of(config(**values)) is expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hash_batchnorm_is_a_bias_free_linear_layer_then_batch_norm(dtype):
    torch.manual_seed(0)
    model = HashingModel("hashing_cnn_small", 16, in_chans=1, hash_batchnorm=True).to(dtype)
    linear, norm = model.hash_layer
    assert linear.bias is None and isinstance(norm, torch.nn.BatchNorm1d)
    x = torch.randn(8, 1, 28, 28, dtype=dtype)
    features = model.backbone(x)
    raw = features @ linear.weight.T
    mean, var = raw.mean(dim=0), raw.var(dim=0, unbiased=False)
    expected = (raw - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    torch.testing.assert_close(model(x), expected)
    plain = HashingModel("hashing_cnn_small", 16, in_chans=1)
    assert isinstance(plain.hash_layer, torch.nn.Linear) and plain.hash_layer.bias is not None


def test_hash_batchnorm_must_be_a_bool():
    with pytest.raises(TypeError, match="hash_batchnorm must be True or False; got 'yes'"):
        HashingModel("hashing_cnn_small", 16, in_chans=1, hash_batchnorm="yes")


@pytest.mark.parametrize("method", ["csq", "orthohash", "pairwise"])
def test_each_new_method_trains_reports_and_reloads_from_its_checkpoint(
    method, tmp_path, tiny_config
):
    metrics = run_experiment(
        tiny_config(
            tmp_path, name="m", method=method, epochs=1, max_train_steps=3, checkpoint_every=0
        )
    )
    assert 0 <= metrics["last_epoch"]["map"] <= 1
    model, loaded, saved, _ = load_checkpoint(tmp_path / "m" / "checkpoint.safetensors")
    assert saved.method == method
    assert isinstance(model.hash_layer, torch.nn.Sequential) is (method == "orthohash")
