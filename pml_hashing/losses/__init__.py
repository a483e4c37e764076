from .polarization_loss import PolarizationLoss

__all__ = ["PolarizationLoss"]
