from .adaptive_target_miner import AdaptiveTargetMiner
from .base_target_miner import TARGET_MINERS, BaseTargetMiner, pairwise_hamming_distances
from .hadamard_target_miner import HadamardTargetMiner
from .hamming_hard_pair_miner import HammingHardPairMiner
from .hash_center_target_miner import HashCenterTargetMiner
from .max_hamming_distance_target_miner import MaxHammingDistanceTargetMiner
from .random_target_miner import RandomTargetMiner

__all__ = [
    "AdaptiveTargetMiner",
    "BaseTargetMiner",
    "HadamardTargetMiner",
    "HashCenterTargetMiner",
    "HammingHardPairMiner",
    "MaxHammingDistanceTargetMiner",
    "RandomTargetMiner",
    "TARGET_MINERS",
    "pairwise_hamming_distances",
]
