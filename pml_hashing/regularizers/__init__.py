"""BDNN's code constraints as pytorch-metric-learning regularizers.

Use them as any PML loss's ``embedding_regularizer=``, e.g.
``PolarizationLoss(..., embedding_regularizer=BitBalanceRegularizer(), embedding_reg_weight=w)``.
All three compute their term without the BDNN paper's ``1/2``: pass ``l / 2`` as the weight to
match the authors' objective.
"""

from .bit_balance_regularizer import BitBalanceRegularizer
from .bit_independence_regularizer import BitIndependenceRegularizer
from .quantization_regularizer import QuantizationRegularizer

__all__ = ["BitBalanceRegularizer", "BitIndependenceRegularizer", "QuantizationRegularizer"]
