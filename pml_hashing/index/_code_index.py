"""What every index of binary codes answers to, whichever engine holds the codes."""

from __future__ import annotations


class CodeIndex:
    """The sizes and layout shared by :class:`~pml_hashing.index.BinaryIndex` and the engine
    indexes (``MilvusIndex``, ``LanceIndex``), so that reports and the CLI read any of them
    the same way. A subclass sets ``_num_bits`` and ``_kind`` and fills :attr:`ntotal`."""

    _num_bits: int
    _kind: str

    @property
    def num_bits(self) -> int:
        """``K``, the code length in bits."""
        return self._num_bits

    @property
    def kind(self) -> str:
        """The index kind, one of the class's ``KINDS`` (``"flat"``, ...)."""
        return self._kind

    @property
    def ntotal(self) -> int:
        """Number of codes in the index."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.ntotal
