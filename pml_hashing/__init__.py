"""pml-hashing: learning to hash as pytorch-metric-learning components.

Import the subpackages the way PML's are imported::

    from pml_hashing import losses, miners, regularizers, evaluation, codes
"""

__version__ = "0.1.0"
