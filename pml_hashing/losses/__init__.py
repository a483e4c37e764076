from .bdnn_reconstruction_loss import BDNNReconstructionLoss
from .bdnn_similarity_loss import BDNNSimilarityLoss
from .multi_label_loss import MultiLabelLoss
from .polarization_loss import PolarizationLoss

__all__ = ["PolarizationLoss", "BDNNSimilarityLoss", "BDNNReconstructionLoss", "MultiLabelLoss"]
