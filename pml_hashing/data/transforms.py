"""The default image transform of the file-based protocols."""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_transform(image_size: int = 224):
    """Resize to ``image_size`` x ``image_size``, ToTensor, ImageNet mean/std normalization.

    A fixed square size (not a shorter-side resize) so that every item batches with every
    other. For a timm backbone pass its own transform instead::

        config = timm.data.resolve_data_config({}, model=backbone)
        transform = timm.data.create_transform(**config)

    Args:
        image_size: side of the output image in pixels.

    Returns:
        A callable from a PIL image to a float32 tensor ``(3, image_size, image_size)``.
    """
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


class ConvertImageMode:
    """Convert a PIL image to ``mode`` (``"L"`` for a one-channel model, ``"RGB"`` for a
    three-channel one) before the rest of a transform, so that a grayscale checkpoint reads
    RGB files and an RGB checkpoint grayscale ones. A class, not a lambda: data loader
    workers pickle the transform."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image):
        return image.convert(self.mode) if hasattr(image, "convert") else image

    def __repr__(self) -> str:
        return f"ConvertImageMode({self.mode!r})"


def channels_transform(transform, channels: int):
    """``transform`` preceded by the PIL conversion to ``channels`` (1 or 3) channels."""
    from torchvision import transforms

    if channels not in (1, 3):
        raise ValueError(
            f"image files can be read for a 1- or 3-channel model only; this model takes "
            f"{channels} channels"
        )
    return transforms.Compose([ConvertImageMode("L" if channels == 1 else "RGB"), transform])


def probe_image_size(dataset) -> tuple[int, int]:
    """``(H, W)`` of the first item of ``dataset`` after its transform (tensor or PIL image)."""
    image = dataset[0][0]
    if hasattr(image, "shape"):
        return tuple(int(s) for s in image.shape[-2:])
    width, height = image.size
    return (int(height), int(width))
