"""ritual (-1, validator): attested re-execution of deterministic inference on this machine."""

from worldrt.providers.ritual._attestation import SCHEME, check_signature, commitment
from worldrt.providers.ritual._engine import AttestedInference, Target
from worldrt.providers.ritual._keys import KEY_FILE
from worldrt.providers.ritual._models import MODELS, Model, python_model_hash
from worldrt.providers.ritual._provider import RitualProvider

PROVIDER = RitualProvider

__all__ = ["RitualProvider", "AttestedInference", "Target", "MODELS", "Model", "python_model_hash", "SCHEME",
           "commitment", "check_signature", "KEY_FILE", "PROVIDER"]
