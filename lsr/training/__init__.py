"""Training SPLADE-style encoders: models, ranking / distillation losses, sparsity regularisers, trainer."""

from .gates import HardConcreteGates, TextTermGates
from .losses import InfoNCELoss, KLDistillationLoss, MarginMSELoss, minmax_per_query
from .models import InferenceFreeModel, SiameseSplade, SpladeTower
from .regularizers import FLOPS, L0MaskFLOPS, L1, IDFAwareFLOPS, quadratic_warmup

__all__ = [
    "FLOPS",
    "HardConcreteGates",
    "TextTermGates",
    "IDFAwareFLOPS",
    "InferenceFreeModel",
    "InfoNCELoss",
    "KLDistillationLoss",
    "L0MaskFLOPS",
    "L1",
    "MarginMSELoss",
    "SiameseSplade",
    "SpladeTower",
    "minmax_per_query",
    "quadratic_warmup",
]
