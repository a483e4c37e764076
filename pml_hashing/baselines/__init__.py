"""Classical (not learned end to end) hashing baselines on any float feature matrix.

``LSH(num_bits, seed=0)`` and ``ITQ(num_bits, iterations=50, seed=0)``, each with
``fit(x)`` and ``encode(x) -> +-1 int8 codes``, built on faiss's own transforms. In the
training recipe they are the fit-only methods ``--method lsh`` / ``--method itq``, fitted
on the flattened training images.
"""

from .itq import ITQ
from .lsh import LSH

__all__ = ["ITQ", "LSH"]
