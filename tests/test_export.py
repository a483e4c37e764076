"""Codes from a checkpoint in one call; ONNX and torch.export give the PyTorch codes."""

import numpy as np
import pytest
import torch

import pml_hashing
from pml_hashing.data import load_protocol
from pml_hashing.export import CodeHead, encode, export_onnx, export_program
from pml_hashing.models import HashingModel
from pml_hashing.training import load_checkpoint, run_experiment


def plain_codes(outputs: torch.Tensor, margin=None) -> np.ndarray:
    """+1 where v >= 0, else -1; 0 where |v| <= margin (DPN-T), written element by element."""
    rows = []
    for row in outputs.tolist():
        codes = []
        for v in row:
            if margin is not None and abs(v) <= margin:
                codes.append(0)
            else:
                codes.append(1 if v >= 0 else -1)
        rows.append(codes)
    return np.asarray(rows, dtype=np.int8)


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    return tiny_run / "checkpoint.safetensors"


def small_model(seed=0):
    torch.manual_seed(seed)
    return HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(8, 16)).eval()


def test_encode_checkpoint_in_one_call_matches_the_models_outputs(checkpoint):
    model, _, _, _ = load_checkpoint(checkpoint)
    protocol = load_protocol("digits")
    images = torch.stack([protocol.query[i][0] for i in range(37)])
    with torch.no_grad():
        expected = plain_codes(model(images))
    codes = pml_hashing.encode(images, checkpoint=checkpoint, batch_size=10)
    assert codes.dtype == torch.int8 and codes.shape == (37, 16)
    np.testing.assert_array_equal(codes.numpy(), expected)
    from_dataset = encode(protocol.query, checkpoint=checkpoint, batch_size=256)
    np.testing.assert_array_equal(from_dataset[:37].numpy(), expected)
    np.testing.assert_array_equal(encode(images[0], model=model).numpy(), expected[:1])


def test_encode_of_a_fit_only_checkpoint_gives_the_runs_codes(tmp_path):
    # ITQ reads pixels, not the network: encode() must give the codes the run evaluated
    from pml_hashing.training import encode_checkpoint

    run_experiment(
        dict(
            name="itq", output_dir=str(tmp_path), dataset="digits", bits=16, method="itq",
            log_with="none", progress=False, checkpoint_every=0,
        )
    )  # fmt: skip
    run = tmp_path / "itq"
    protocol = load_protocol("digits")
    images = torch.stack([protocol.query[i][0] for i in range(50)])
    expected = encode_checkpoint(run, split="query")["codes"][:50]
    np.testing.assert_array_equal(encode(images, checkpoint=run, batch_size=16).numpy(), expected)


def test_encode_of_pil_images_uses_the_backbones_transform(tmp_path):
    from PIL import Image
    from timm.data import create_transform

    model = HashingModel("hashing_cnn_small", 16, widths=(8, 16)).eval()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)) for _ in range(3)]
    images[1].save(tmp_path / "one.png")
    transform = create_transform(**model.data_config())
    with torch.no_grad():
        expected = plain_codes(model(torch.stack([transform(i) for i in images])))
    codes = encode([images[0], tmp_path / "one.png", images[2]], model=model)
    np.testing.assert_array_equal(codes.numpy(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_code_head_thresholds_like_the_paper(dtype):
    v = torch.tensor([[-2.0, -0.3, 0.0, 0.2, 1.5]], dtype=dtype)
    identity = torch.nn.Identity()
    np.testing.assert_array_equal(CodeHead(identity)(v).numpy(), plain_codes(v))
    np.testing.assert_array_equal(
        CodeHead(identity, ternary_margin=0.25)(v).numpy(), plain_codes(v, margin=0.25)
    )
    torch.testing.assert_close(CodeHead(identity, "outputs")(v), v)


def test_torch_export_program_equals_eager_for_any_batch_size():
    model = small_model()
    program = export_program(model)
    for n in (1, 3, 7):
        images = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            eager = CodeHead(model)(images)
            outputs = model(images)
        torch.testing.assert_close(program.module()(images), eager, rtol=0, atol=0)
        torch.testing.assert_close(
            export_program(model, images, output="outputs").module()(images), outputs
        )


def test_onnx_round_trip_gives_the_pytorch_codes(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, _, _, _ = load_checkpoint(checkpoint)
    path = export_onnx(model, tmp_path / "model.onnx", example=torch.randn(2, 1, 8, 8))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for n in (1, 9):  # the batch dimension is dynamic
        images = torch.randn(n, 1, 8, 8)
        with torch.no_grad():
            outputs = model(images)
        (codes,) = session.run(None, {"images": images.numpy()})
        assert codes.dtype == np.int8
        # Away from 0 the sign cannot differ by rounding: there the codes are equal.
        sure = outputs.abs().numpy() > 1e-4
        np.testing.assert_array_equal(codes[sure], plain_codes(outputs)[sure])
    path = export_onnx(model, tmp_path / "outputs.onnx", example=images, output="outputs")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected,
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_export_and_encode_errors_name_the_argument():
    model = small_model()
    with pytest.raises(ValueError, match="output must be one of"):
        export_program(model, output="bits")
    with pytest.raises(ValueError, match=r"example must be an image batch tensor \(N, C, H, W\)"):
        export_program(model, example=torch.zeros(28, 28))
    with pytest.raises(ValueError, match="give exactly one of checkpoint= and model="):
        encode(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="data must be a float image batch"):
        encode(torch.zeros(2, 28, 28, 1, 1), model=model)
    with pytest.raises(TypeError, match="data must be an image tensor, a torch Dataset"):
        encode(3, model=model)


@pytest.mark.parametrize("method_name", ["classifier", "lsh", "itq"])
def test_exports_of_methods_with_their_own_retrieval_map_give_the_runs_codes(tmp_path, method_name):
    # The classifier's codes are centred class probabilities and LSH's are projections of
    # the pixels: the bare network's outputs are not the run's codes.
    run_experiment(
        dict(
            name=method_name, output_dir=str(tmp_path), dataset="digits", bits=16,
            method=method_name, backbone_kwargs={"widths": [8, 16]}, epochs=1,
            log_with="none", progress=False, checkpoint_every=0,
        )
    )  # fmt: skip
    run = tmp_path / method_name
    model, method, _, _ = load_checkpoint(run)
    images = torch.stack([load_protocol("digits").query[i][0] for i in range(23)])
    expected = encode(images, checkpoint=run).numpy()
    with pytest.raises(ValueError, match=f"trained with method '{method_name}'.*pass method="):
        export_program(model, example=images[:2])
    with pytest.raises(ValueError, match=f"trained with method '{method_name}'.*pass method="):
        encode(images, model=model)
    np.testing.assert_array_equal(encode(images, model=model, method=method).numpy(), expected)
    program = export_program(model, example=images[:2], method=method)
    np.testing.assert_array_equal(program.module()(images).numpy(), expected)
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "m.onnx", example=images[:2], method=method)
    (codes,) = ort.InferenceSession(str(path)).run(None, {"images": images.numpy()})
    np.testing.assert_array_equal(codes, expected)


@pytest.mark.parametrize("model_channels", [1, 3])
@pytest.mark.parametrize("file_mode", ["L", "RGB", "LA", "RGBA"])
def test_encode_converts_image_files_to_the_models_channels(tmp_path, model_channels, file_mode):
    from PIL import Image
    from timm.data import create_transform

    torch.manual_seed(0)
    model = HashingModel("hashing_cnn_small", 16, in_chans=model_channels, widths=(8, 16))
    model.eval()
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        shape = (12, 10) if file_mode == "L" else (12, 10, len(file_mode))
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), file_mode).save(
            tmp_path / f"{i}.png"
        )
        paths.append(tmp_path / f"{i}.png")
    mode = "L" if model_channels == 1 else "RGB"
    transform = create_transform(**model.data_config())
    batch = torch.stack([transform(Image.open(p).convert(mode)) for p in paths])
    assert batch.shape[1] == model_channels
    with torch.no_grad():
        expected = plain_codes(model(batch))
    np.testing.assert_array_equal(encode(paths, model=model).numpy(), expected)


def test_encode_names_an_image_file_it_cannot_read(tmp_path):
    from PIL import Image

    model = small_model()
    good, bad = tmp_path / "good.png", tmp_path / "truncated.png"
    noise = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated.png cannot be read"):
        encode([good, bad], model=model)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m: encode(torch.zeros(2, 1, 28, 28), model=m, batch_size="x"), "batch_size"),
        (lambda m: encode(torch.zeros(2, 1, 28, 28), model=m, batch_size=0), "batch_size"),
        (lambda m: export_program(m, ternary_margin="abc"), "ternary_margin"),
        (lambda m: export_program(m, ternary_margin=-1), "ternary_margin"),
        (lambda m: encode(torch.zeros(2, 1, 28, 28), model=m, ternary_margin=float("nan")),
         "ternary_margin"),
    ],
)  # fmt: skip
def test_encode_and_export_errors_name_their_argument(call, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        call(small_model())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_encode_is_the_float_form_of_the_int8_codes_encode_returns(dtype):
    model = small_model().to(dtype)
    images = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(2), dtype=dtype)
    floats = model.encode(images)
    assert floats.dtype == dtype  # multiplies with the outputs in a training loop
    codes = encode(images, model=model)
    assert codes.dtype == torch.int8  # what indexes and files store
    with torch.no_grad():
        np.testing.assert_array_equal(codes.numpy(), plain_codes(model(images)))
    assert torch.equal(floats.to(torch.int8), codes)


def test_encode_of_a_float64_batch_gives_the_float32_models_codes():
    model = small_model()
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    codes = encode(images.double(), model=model)
    with torch.no_grad():
        np.testing.assert_array_equal(codes.numpy(), plain_codes(model(images)))


@pytest.mark.parametrize("as_dataset", [False, True])
def test_encode_refuses_a_tensor_of_other_channels_before_any_work(as_dataset):
    from torch.utils.data import TensorDataset

    images = torch.zeros(3, 3, 28, 28)
    data = TensorDataset(images, torch.arange(3)) if as_dataset else images
    with pytest.raises(ValueError, match="data has 3 channels but the model takes 1"):
        encode(data, model=small_model())
