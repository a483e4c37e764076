"""timm backbones on the bundled data: --image-size, data_config(), input checks, weights."""

import importlib.util
import re
from pathlib import Path

import pytest
import timm
import torch

from pml_hashing.models import HashingModel
from pml_hashing.training import run_experiment

ROOT = Path(__file__).resolve().parents[1]


def train_recipe():
    spec = importlib.util.spec_from_file_location("train", ROOT / "recipes" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_step_flags(tmp_path, backbone, *extra, dataset="mnist-5k"):
    # One training step; 10 queries a class keep the (full-database) evaluation short.
    return [
        "--name", backbone, "--output-dir", str(tmp_path), "--dataset", dataset,
        "--backbone", backbone, "--bits", "16", "--epochs", "1", "--max-train-steps", "1",
        "--batch-size", "8", "--eval-batch-size", "500", "--log-with", "none",
        "--no-progress", "--checkpoint-every", "0",
        "--data-kwargs", "{query_per_class: 10}", *extra,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, dataset, extra",
    [
        # The evaluation encodes every image (5,000 for MNIST), so each family runs at the
        # smallest size it accepts, and the ViT and the ConvNeXt with fewer blocks (their
        # input rules, which this checks, do not depend on the depth).
        ("resnet18", "digits", ["--image-size", "16"]),
        (
            "vit_tiny_patch16_224",
            "mnist-5k",
            ["--image-size", "16", "--backbone-kwargs", "{img_size: 16, depth: 2}"],
        ),
        (
            "convnext_atto",
            "mnist-5k",
            ["--image-size", "32", "--backbone-kwargs", "{depths: [1, 1, 1, 1]}"],
        ),
    ],
)
def test_timm_backbone_trains_one_step_with_image_size(tmp_path, backbone, dataset, extra):
    flags = one_step_flags(tmp_path, backbone, *extra, dataset=dataset)
    metrics = train_recipe().main(flags)
    result = metrics["last_epoch"]
    size = int(extra[1])
    total = 5000 if dataset == "mnist-5k" else 1797
    # one step of epoch 1: no epoch finished (a max_train_steps stop is mid-epoch)
    assert metrics["backbone"] == backbone and metrics["steps_trained"] == 1
    assert metrics["epochs_trained"] == 0
    assert result["num_query"] == 100 and result["num_database"] == total - 100
    assert 0.0 <= result["map"] <= 1.0
    from pml_hashing.training import load_checkpoint

    model, _, config, _ = load_checkpoint(tmp_path / backbone / "checkpoint.safetensors")
    assert config.image_size == size and model.data_config()["input_size"][0] == 1
    model.check_input_size(size)


def test_image_size_resizes_the_bundled_images(tmp_path):
    from pml_hashing.data import load_protocol, resize_protocol

    protocol = load_protocol("digits", query_per_class=5)
    original = protocol.query[3][0]
    resize_protocol(protocol, 20)
    image = protocol.query[3][0]
    assert protocol.image_size == (20, 20) and image.shape == (1, 20, 20)
    expected = torch.nn.functional.interpolate(
        original[None], size=(20, 20), mode="bilinear", antialias=True, align_corners=False
    )[0]
    torch.testing.assert_close(image, expected)
    assert protocol.train[0][0].shape == (1, 20, 20) and protocol.database[0][0].shape[-1] == 20


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_resize_protocol_refuses_a_bad_size(bad):
    from pml_hashing.data import load_protocol, resize_protocol

    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        resize_protocol(load_protocol("digits", query_per_class=5), bad)


def test_vit_mismatch_fails_before_training_naming_both_flags(tmp_path, capsys):
    # the recipe reports errors found while building the run as argparse usage errors
    with pytest.raises(SystemExit) as exit_info:
        train_recipe().main(one_step_flags(tmp_path, "vit_tiny_patch16_224"))
    assert exit_info.value.code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "does not accept 1x28x28 images" in message
    assert "--image-size 224" in message and "--backbone-kwargs '{img_size: 28}'" in message
    assert not (tmp_path / "vit_tiny_patch16_224" / "splits.json").exists()


def test_convnext_too_small_input_fails_before_training_naming_image_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_recipe().main(one_step_flags(tmp_path, "convnext_atto"))
    assert exit_info.value.code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert re.search("too small for its downsampling.*--image-size", message)
    assert not (tmp_path / "convnext_atto" / "splits.json").exists()


@pytest.mark.parametrize("img_size, expected", [(28, (28, 28)), ((32, 48), (32, 48))])
def test_data_config_honours_img_size(img_size, expected):
    model = HashingModel("vit_tiny_patch16_224", 16, in_chans=1, img_size=img_size)
    config = model.data_config()
    assert config["input_size"] == (1, *expected)
    assert len(config["mean"]) == 1 and len(config["std"]) == 1
    model.check_input_size(expected)  # the size it reports is the size it accepts


def test_data_config_without_kwargs_is_timms():
    import timm

    model = HashingModel("resnet18", 16)
    assert model.data_config() == timm.data.resolve_data_config({}, model=model.backbone)


def test_pretrained_true_offline_fails_at_once_naming_the_local_file_option(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # An empty cache, and the hub told it is offline: nothing can be found or fetched.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ValueError) as error:
        run_experiment({"output_dir": str(tmp_path), "backbone": "resnet18", "pretrained": "true"})
    message = str(error.value)
    assert "HF_HUB_OFFLINE is set" in message and "local weights file" in message
    assert "--pretrained PATH" in message
    assert not (tmp_path / "mnist-5k-dpn-64b-seed0" / "splits.json").exists()


def test_hf_hub_name_offline_fails_naming_the_local_file_option(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match="local weights file"):
        HashingModel("hf-hub:timm/resnet18.a1_in1k", 16)


def test_pretrained_config_accepts_true_false_and_a_path():
    from pml_hashing.training import ExperimentConfig, parse_config

    assert parse_config(["--pretrained", "true"]).pretrained is True
    assert parse_config(["--pretrained", "false"]).pretrained is False
    assert parse_config(["--pretrained", "w.pth"]).pretrained == "w.pth"
    assert ExperimentConfig.from_dict({"pretrained": True}).pretrained is True
    with pytest.raises(ValueError, match="pretrained must be"):
        ExperimentConfig.from_dict({"pretrained": 3})
    with pytest.raises(TypeError, match="pretrained must be True, False or the path"):
        HashingModel("resnet18", 16, pretrained=3)


def test_pretrained_true_loads_timms_weights_from_the_cache(tmp_path, monkeypatch):
    """pretrained=True goes through timm's loader: the same weights timm's own
    ``create_model(pretrained=True)`` gives, here from a local file that timm is pointed at
    with ``pretrained_cfg_overlay`` (no network in the tests)."""
    import timm

    source = timm.create_model("resnet18", num_classes=0)
    weights = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights)
    model = HashingModel(
        "resnet18", 16, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}
    )
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def fake_hub_cache(cache, repo_id: str, state: dict) -> None:
    """The Hugging Face cache layout that huggingface_hub reads offline."""
    from safetensors.torch import save_file

    revision = "0" * 40
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    save_file(state, str(folder / "snapshots" / revision / "model.safetensors"))


def offline_hub(monkeypatch, cache):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))


def test_pretrained_true_offline_reads_weights_from_the_hf_cache(tmp_path, monkeypatch):
    import timm

    source = timm.create_model("resnet18", num_classes=0)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    repo_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    fake_hub_cache(tmp_path / "hub", repo_id, state)
    offline_hub(monkeypatch, tmp_path / "hub")
    model = HashingModel("resnet18", 16, pretrained=True)
    for key, value in state.items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_unreachable_hub_fails_at_once_and_leaves_the_hub_setting(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from pml_hashing.models import hashing_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hashing_model, "_hub_unreachable", lambda timeout=3.0: True)
    with pytest.raises(ValueError, match=r"could not be reached \(no network\).*local weights"):
        HashingModel("resnet18", 16, pretrained=True)
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False


def test_check_input_size_names_a_channel_mismatch():
    model = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(8, 16))
    with pytest.raises(ValueError, match="built for in_chans=1; the images have 3 channel"):
        model.check_input_size(28, in_chans=3)
    model.train()
    model.check_input_size((8, 12))
    assert model.training  # the check restores the mode it found


def test_the_package_backbone_built_directly_is_the_one_timm_builds():
    # HashingModel builds hashing_cnn_small without importing timm: the same network and,
    # from the same seed, the same weights as timm.create_model gives
    torch.manual_seed(3)
    direct = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(8, 16), drop_rate=None)
    torch.manual_seed(3)
    through_timm = timm.create_model(
        "hashing_cnn_small", num_classes=0, in_chans=1, widths=(8, 16), drop_rate=None
    )
    assert type(direct.backbone) is type(through_timm)
    expected = through_timm.state_dict()
    assert direct.backbone.state_dict().keys() == expected.keys()
    for key, value in direct.backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key
