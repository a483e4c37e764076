from .hashing_model import HashingModel
from .small_cnn import SmallCNN

__all__ = ["HashingModel", "SmallCNN"]
