"""gensyn (-1, validator): refereed delegation and spot checks of claimed step-by-step computations."""

from worldrt.providers.gensyn._bisect import bisect_divergence
from worldrt.providers.gensyn._provider import GensynProvider
from worldrt.providers.gensyn._spotcheck import detection_probability

PROVIDER = GensynProvider

__all__ = ["GensynProvider", "bisect_divergence", "detection_probability", "PROVIDER"]
