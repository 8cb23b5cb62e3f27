"""The provider framework: one typed handler served as a DVM in both dialects."""

from dvmkit.provider.config import Limits, PaymentProcessor, PaymentRequest
from dvmkit.provider.dvm import DVM
from dvmkit.provider.job import Job
from dvmkit.provider.stats import ProviderStats

__all__ = ["DVM", "Job", "Limits", "PaymentProcessor", "PaymentRequest", "ProviderStats"]
