"""gensyn (-1, validator): refereed delegation and spot checks of claimed step-by-step computations."""

from ._bisect import bisect_divergence
from ._provider import GensynProvider
from ._spotcheck import detection_probability

PROVIDER = GensynProvider

__all__ = ["GensynProvider", "bisect_divergence", "detection_probability", "PROVIDER"]
