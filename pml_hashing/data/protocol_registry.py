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
    """The facts about a protocol's data: what its registration says before any of it is
    read (``protocol_info(name)``), and, once it is loaded, what a hashing method needs to be
    built (``ProtocolInfo.of(protocol)``).

    Attributes:
        name: the registered name.
        in_chans: channels of its images (1 for the bundled grey digits, 3 for RGB files):
            the backbone is built with it before the data is loaded.
        needs_root: whether it reads files under ``root`` (else it ships with a package).
        takes_transform: whether it takes ``transform=`` per image, so that a training job
            hands it the backbone's timm transform (resize, ImageNet normalization); the
            others standardize their tensors themselves.
        num_classes: classes of the training labels (None before loading).
        num_train: items of the training split (None before loading).
        input_dim: input features of one training item (``C * H * W``), read from the
            first item only when asked for (UH-BDNN reconstructs its inputs); else None.

    A loaded :class:`~pml_hashing.data.Protocol` keeps the loader's free-form extras (class
    names, the class split) in its ``info`` dict.
    """

    name: str
    in_chans: int
    needs_root: bool = False
    takes_transform: bool = False
    num_classes: int | None = None
    num_train: int | None = None
    input_dim: int | None = None

    @classmethod
    def of(cls, protocol, with_input_dim: bool = True) -> ProtocolInfo:
        """The facts of a loaded :class:`~pml_hashing.data.Protocol` (its ``train`` split);
        a :class:`ProtocolInfo` is returned as it is."""
        if isinstance(protocol, ProtocolInfo):
            return protocol
        registered = PROTOCOLS.info(protocol.name) if protocol.name in PROTOCOLS else {}
        return cls(
            name=protocol.name,
            in_chans=int(protocol.in_chans),
            needs_root=bool(registered.get("needs_root", False)),
            takes_transform=bool(registered.get("takes_transform", False)),
            num_classes=int(protocol.num_classes),
            num_train=len(protocol.train),
            input_dim=int(protocol.train[0][0].numel()) if with_input_dim else None,
        )


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
