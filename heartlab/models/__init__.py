"""Beat classifiers, each a gin configurable taking ``num_classes`` and declaring its ``input_view``
(``'1d'``: ``(B, 1, 187)``; ``'2d'``: ``(B, 1, 16, 12)``)."""

from heartlab.models.baselines import CNN2D, Transformer1D
from heartlab.models.cnn2d import CNN2DPlus
from heartlab.models.inception import InceptionTime
from heartlab.models.recurrent import CNNGRU
from heartlab.models.resnet1d import ResNet1D
from heartlab.models.transformer import Transformer1DPlus

__all__ = ["CNN2D", "Transformer1D", "ResNet1D", "InceptionTime", "CNNGRU", "CNN2DPlus", "Transformer1DPlus"]
