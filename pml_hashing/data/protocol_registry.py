"""The registry of retrieval protocols, and what each one tells before it is loaded."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry

# Protocol loaders by the name a config gives (``dataset:``). Each protocol's file registers
# ``loader(seed=, split_file=, **kwargs)`` (plus ``root=`` when ``needs_root``) with the
# facts of :class:`ProtocolInfo` as keywords.
PROTOCOLS: Registry = Registry("protocol", "dataset")


@dataclass(frozen=True)
class ProtocolInfo:
    """What a protocol says about its data before any of it is read.

    Attributes:
        name: the registered name.
        in_chans: channels of its images (1 for the bundled grey digits, 3 for RGB files):
            the backbone is built with it before the data is loaded.
        needs_root: whether it reads files under ``root`` (else it ships with a package).
        takes_transform: whether it takes ``transform=`` per image, so that a training job
            hands it the backbone's timm transform (resize, ImageNet normalization); the
            others standardize their tensors themselves.
    """

    name: str
    in_chans: int
    needs_root: bool
    takes_transform: bool


def register_protocol(
    name: str,
    loader=None,
    *,
    in_chans: int,
    needs_root: bool,
    takes_transform: bool,
    overwrite: bool | None = None,
):
    """Register a protocol loader under ``name`` (a decorator when ``loader`` is omitted).

    A name that is already taken warns before it is replaced (``overwrite=False`` refuses).
    """
    return PROTOCOLS.register(
        name,
        loader,
        overwrite=overwrite,
        in_chans=in_chans,
        needs_root=needs_root,
        takes_transform=takes_transform,
    )


def protocol_info(name: str) -> ProtocolInfo:
    """The :class:`ProtocolInfo` of a registered protocol; an unknown name raises
    ``ValueError`` listing the names."""
    return ProtocolInfo(name=name, **PROTOCOLS.info(name))
