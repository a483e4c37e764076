"""Use a trained model outside the training code: codes in one call, ONNX, ``torch.export``.

::

    codes = pml_hashing.encode(images, checkpoint="runs/mnist-5k-dpn-random-64b-seed0")
    model, method, config, _ = load_checkpoint("runs/.../checkpoint.safetensors")
    export_onnx(model, "model.onnx", example=images[:2], method=method)  # pip install ".[onnx]"
    program = export_program(model, example=images[:2], method=method)  # ExportedProgram
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ._validation import check_integer, check_real

OUTPUTS = ("codes", "outputs")


class CodeHead(nn.Module):
    """A ``HashingModel`` whose forward returns what retrieval uses: codes or real outputs.

    ``output="codes"``: int8 codes in {-1, +1} (``v >= 0 -> +1``, as
    :func:`pml_hashing.codes.binarize`), or in {-1, 0, +1} with ``ternary_margin`` (DPN-T,
    :func:`pml_hashing.codes.ternarize`); ``output="outputs"``: the real outputs ``v``.
    Exported graphs hold the thresholding, so a runtime without PyTorch gives the codes.
    """

    def __init__(self, model: nn.Module, output: str = "codes", ternary_margin=None):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}; got {output!r}")
        if ternary_margin is not None:
            ternary_margin = check_real(ternary_margin, "ternary_margin", minimum=0)
        self.model = model
        self.output = output
        self.ternary_margin = ternary_margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.model(x)
        if self.output == "outputs":
            return v
        one = torch.ones_like(v, dtype=torch.int8)
        codes = torch.where(v >= 0, one, -one)
        if self.ternary_margin is not None:
            codes = torch.where(v.abs() <= self.ternary_margin, torch.zeros_like(codes), codes)
        return codes


class _RetrievalNetwork(nn.Module):
    """A checkpoint's model followed by its method's retrieval map: the identity for DPN and
    BDNN, centred class probabilities for the classifier, projections of the flattened
    pixels for LSH and ITQ (the codes the run's report and ``encode_checkpoint`` give)."""

    def __init__(self, model: nn.Module, method: nn.Module):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.retrieval_outputs(self.method.retrieval_encoder(self.model)(x))


def _exported_network(model: nn.Module, method) -> nn.Module:
    """The network whose outputs' signs are the run's codes: ``model``, or ``model``
    followed by ``method``'s retrieval map. A model from a checkpoint whose method maps its
    outputs (classifier, LSH, ITQ) is refused without that method: its bare outputs are not
    the run's codes."""
    if method is not None:
        if not hasattr(method, "retrieval_outputs"):
            raise ValueError(
                f"method must be a pml-hashing method (load_checkpoint's second value); got "
                f"{type(method).__name__}"
            )
        return _RetrievalNetwork(model, method)
    needs = getattr(model, "retrieval_method", None)
    if needs is not None:
        raise ValueError(
            f"this model was trained with method {needs!r}, whose codes are not the model's "
            "outputs; pass method= (the second value load_checkpoint returns)"
        )
    return model


def _example(model: nn.Module, example) -> torch.Tensor:
    """The example batch to trace with: the one given, or zeros of the model's input size."""
    if example is not None:
        if not isinstance(example, torch.Tensor) or example.ndim != 4:
            raise ValueError(
                "example must be an image batch tensor (N, C, H, W); got "
                + (
                    f"shape {tuple(example.shape)}"
                    if isinstance(example, torch.Tensor)
                    else type(example).__name__
                )
            )
        # torch.export specializes a batch dimension of 1 to a constant: trace with two.
        return example.expand(2, *example.shape[1:]) if example.shape[0] == 1 else example
    if not hasattr(model, "data_config"):
        raise ValueError("example is required for a model without data_config()")
    channels, height, width = model.data_config()["input_size"]
    # Two items, not one: a batch dimension of 1 would be specialized to a constant.
    return torch.zeros(2, channels, height, width, device=next(model.parameters()).device)


def export_onnx(
    model: nn.Module,
    path,
    example: torch.Tensor | None = None,
    output: str = "codes",
    ternary_margin: float | None = None,
    opset_version: int | None = None,
    method: nn.Module | None = None,
) -> Path:
    """Write the model as an ONNX file with a dynamic batch dimension.

    Uses ``torch.onnx.export(..., dynamo=True)`` (needs ``onnx`` and ``onnxscript``:
    ``pip install "pml-hashing[onnx]"``, which also brings ``onnxruntime`` to run it). The
    graph's input is ``images`` ``(N, C, H, W)`` float32 and its output ``codes``
    (int8, see :class:`CodeHead`) or ``outputs`` (float32 ``(N, K)``).

    Args:
        model: a ``HashingModel`` (e.g. from :func:`pml_hashing.training.load_checkpoint`),
            or any module mapping an image batch to ``(N, K)`` outputs.
        path: the ``.onnx`` file to write.
        example: an image batch of the input size (default: zeros of the size
            ``model.data_config()`` reports).
        output: ``"codes"`` or ``"outputs"``.
        ternary_margin: export DPN-T ternary codes with this margin.
        opset_version: ONNX opset (default: the exporter's).
        method: the checkpoint's method (:func:`~pml_hashing.training.load_checkpoint`'s
            second value): the export then ends in its retrieval map, as the run's codes
            do. Needed for the classifier, LSH and ITQ; the identity for DPN and BDNN.

    Returns:
        The path written.
    """
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            raise ImportError(
                f"export_onnx needs the {name!r} package: pip install 'pml-hashing[onnx]'"
            ) from None
    head = CodeHead(_exported_network(model, method), output, ternary_margin).eval()
    example = _example(model, example)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        torch.onnx.export(
            head,
            (example,),
            str(path),
            input_names=["images"],
            output_names=[output],
            dynamic_shapes={"x": {0: batch}},
            opset_version=opset_version,
            dynamo=True,
            verbose=False,
            external_data=False,  # one self-contained file; hashing models are small
        )
    return path


def export_program(
    model: nn.Module,
    example: torch.Tensor | None = None,
    output: str = "codes",
    ternary_margin: float | None = None,
    method: nn.Module | None = None,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of the model in eval mode, with a dynamic batch dimension.

    Save it with ``torch.export.save(program, "model.pt2")``, run it with
    ``program.module()(images)``, or compile it ahead of time with AOTInductor.

    Args:
        model, example, output, ternary_margin, method: as for :func:`export_onnx`.

    Returns:
        The ``torch.export.ExportedProgram``.
    """
    head = CodeHead(_exported_network(model, method), output, ternary_margin).eval()
    example = _example(model, example)
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        return torch.export.export(head, (example,), dynamic_shapes={"x": {0: batch}})


def encode(
    data,
    checkpoint=None,
    model: nn.Module | None = None,
    batch_size: int = 512,
    ternary_margin: float | None = None,
    device=None,
    method: nn.Module | None = None,
) -> torch.Tensor:
    """Codes of images in one call, from a trained checkpoint (or a model).

    Args:
        data: an image batch tensor ``(N, C, H, W)`` (or one image ``(C, H, W)``),
            preprocessed as in training; a torch ``Dataset`` of ``(image, label)`` or of
            images (e.g. ``protocol.query``); or a sequence of PIL images or image file
            paths, which get the backbone's timm eval transform at the checkpoint's
            ``image_size`` (for the file-based protocols and image folders).
        checkpoint: ``runs/<name>/checkpoint.safetensors`` (loaded with
            :func:`pml_hashing.training.load_checkpoint`).
        model: a ``HashingModel`` to use instead of a checkpoint.
        batch_size: images per forward pass.
        ternary_margin: ternary codes (DPN-T) with this margin instead of binary ones.
        device: where to run (default: the model's device).
        method: with ``model=``, the checkpoint's method (:func:`load_checkpoint`'s second
            value), as for :func:`export_onnx`: required for a model of a classifier, LSH or
            ITQ run, whose codes are not the bare network's outputs.

    Returns:
        int8 codes ``(N, K)`` in {-1, +1} (or {-1, 0, +1}) on the CPU. (``model.encode``
        of a ``HashingModel`` returns the same values in the outputs' float dtype, to
        multiply with them; these int8 codes are what indexes and files store.)
    """
    batch_size = _check_encode_arguments(checkpoint, model, method, batch_size)
    model, method, image_size = _encoding_model(checkpoint, model, method, device)
    head = CodeHead(_exported_network(model, method), "codes", ternary_margin)
    codes = _run_eval(head, model, _batches(data, model, image_size, batch_size))
    if not codes:
        return torch.empty(0, getattr(model, "num_bits", 0), dtype=torch.int8)
    return torch.cat(codes)


def _check_encode_arguments(checkpoint, model, method, batch_size) -> int:
    if (checkpoint is None) == (model is None):
        raise ValueError("give exactly one of checkpoint= and model=")
    if checkpoint is not None and method is not None:
        raise ValueError("method= goes with model=; a checkpoint brings its own method")
    return check_integer(batch_size, "batch_size", minimum=1)


def _encoding_model(checkpoint, model, method, device) -> tuple[nn.Module, object, int | None]:
    """``(model, method, image_size)``: the checkpoint's (or the given model and method), on
    ``device``; ``image_size`` is the checkpoint config's (None for a bare model)."""
    image_size = None
    if checkpoint is not None:
        from .training import load_checkpoint

        model, method, config, _ = load_checkpoint(checkpoint)
        image_size = getattr(config, "image_size", None)
    if device is not None:
        model = model.to(device)
    if method is not None and hasattr(method, "to"):
        method = method.to(next(model.parameters()).device)
    return model, method, image_size


def _run_eval(head: nn.Module, model: nn.Module, batches) -> list[torch.Tensor]:
    """``head``'s CPU outputs for each batch, with ``model`` in eval mode (its mode restored)."""
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # images in the model's dtype: a float64 batch for a float32 model is still images
            return [head(images.to(device=device, dtype=dtype)).cpu() for images in batches]
    finally:
        model.train(was_training)


def _batches(data, model, image_size, batch_size):
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, torch.Tensor):
        if data.ndim == 3:
            data = data.unsqueeze(0)
        if data.ndim != 4 or not data.is_floating_point():
            raise ValueError(
                f"data must be a float image batch (N, C, H, W) or one image (C, H, W); got "
                f"{data.dtype} of shape {tuple(data.shape)}"
            )
        _check_channels(data.shape[1], model)
        return data.split(batch_size)
    if isinstance(data, Dataset):
        if len(data):
            first = data[0]
            first = first[0] if isinstance(first, (list, tuple)) else first
            if isinstance(first, torch.Tensor) and first.ndim == 3:
                _check_channels(first.shape[0], model)
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        return (batch[0] if isinstance(batch, (list, tuple)) else batch for batch in loader)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        transform = _file_transform(model, image_size)
        mode = _pil_mode(model)
        images = [transform(_open_image(item, mode)) for item in data]
        return torch.stack(images).split(batch_size) if images else []
    raise TypeError(
        "data must be an image tensor, a torch Dataset, or a list of PIL images or paths; "
        f"got {type(data).__name__}"
    )


def _check_channels(channels: int, model) -> None:
    """A preprocessed batch must already have the model's channels (files and PIL images
    are converted; a tensor is not guessed at): say so before any work."""
    expected = model.data_config()["input_size"][0] if hasattr(model, "data_config") else None
    if expected is not None and channels != expected:
        raise ValueError(
            f"data has {channels} channels but the model takes {expected} (data (N, C, H, W); "
            "image files and PIL images are converted, tensors are not)"
        )


def _file_transform(model, image_size):
    from timm.data import create_transform

    config = model.data_config()
    if image_size is not None:
        config["input_size"] = (config["input_size"][0], image_size, image_size)
    return create_transform(**config)


def _pil_mode(model) -> str:
    """The PIL mode of the model's input channels: grayscale ``L`` for one, ``RGB`` else."""
    if not hasattr(model, "data_config"):
        return "RGB"
    channels = model.data_config()["input_size"][0]
    if channels not in (1, 3):
        raise ValueError(
            f"images can be encoded from files or PIL only for a 1- or 3-channel model; this "
            f"model takes {channels} channels (pass a preprocessed tensor)"
        )
    return "L" if channels == 1 else "RGB"


def _open_image(item, mode: str):
    """A PIL image in the model's channels (a grayscale checkpoint gets grayscale images, an
    RGB one RGB), fully decoded, so that a damaged file is named here and not mid-batch."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert(mode)
    if isinstance(item, (str, Path)):
        try:
            with Image.open(item) as image:
                image.load()
                return image.convert(mode)
        except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for broken files
            raise ValueError(
                f"image file {item} cannot be read ({type(e).__name__}: {e})"
            ) from None
    raise TypeError(f"list items must be PIL images or image file paths; got {type(item).__name__}")
