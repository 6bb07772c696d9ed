"""ritual (-1, validator): attested re-execution of deterministic inference on this machine."""

from ._attestation import SCHEME, check_signature, commitment
from ._engine import AttestedInference, Target
from ._models import MODELS, Model, python_model_hash
from ._provider import RitualProvider

PROVIDER = RitualProvider

__all__ = ["RitualProvider", "AttestedInference", "Target", "MODELS", "Model", "python_model_hash", "SCHEME",
           "commitment", "check_signature", "PROVIDER"]
