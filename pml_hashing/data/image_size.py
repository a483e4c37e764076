"""Resize the images of any protocol to one square size (``--image-size``)."""

from __future__ import annotations

from .._validation import check_integer
from .protocol import Protocol

SPLITS = ("train", "query", "database", "validation")


def resize_protocol(protocol: Protocol, image_size: int) -> Protocol:
    """Resize every split's images to ``image_size`` x ``image_size`` as they are read.

    Meant for the in-memory protocols (``mnist-5k``, ``digits``: tensors ``(C, H, W)``)
    whose images are too small for an ImageNet backbone; the file-based protocols take the
    size in their transform instead (``image_size=`` or the backbone's timm transform).
    Bilinear with antialiasing; the channels are kept (timm builds any backbone for
    ``in_chans=1``). Changes ``protocol`` in place and returns it.

    Args:
        protocol: a protocol whose split datasets have a ``transform`` attribute that
            returns tensors (:class:`TensorImageDataset`).
        image_size: the side in pixels, >= 1.
    """
    from torchvision.transforms import Compose, Resize

    image_size = check_integer(image_size, "image_size", minimum=1)
    resize = Resize((image_size, image_size), antialias=True)
    for key in SPLITS:
        dataset = getattr(protocol, key)
        if dataset is None:
            continue
        if not hasattr(dataset, "transform"):
            raise TypeError(
                f"resize_protocol needs split datasets with a transform attribute; "
                f"{key} is a {type(dataset).__name__}"
            )
        dataset.transform = (
            resize if dataset.transform is None else Compose([dataset.transform, resize])
        )
    protocol.image_size = (image_size, image_size)
    return protocol
