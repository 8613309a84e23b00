"""Losses shared by methods. `contrastive`: InfoNCE with negatives gathered over the global batch."""
from clowlab.losses import contrastive

__all__ = ["contrastive"]
