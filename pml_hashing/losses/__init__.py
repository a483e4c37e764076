from .bdnn_reconstruction_loss import BDNNReconstructionLoss
from .bdnn_similarity_loss import BDNNSimilarityLoss
from .csq_loss import CSQLoss
from .multi_label_loss import MultiLabelLoss
from .ortho_hash_loss import OrthoHashLoss
from .polarization_loss import PolarizationLoss
from .target_code_loss import TargetCodeLoss

__all__ = [
    "PolarizationLoss",
    "CSQLoss",
    "OrthoHashLoss",
    "TargetCodeLoss",
    "BDNNSimilarityLoss",
    "BDNNReconstructionLoss",
    "MultiLabelLoss",
]
