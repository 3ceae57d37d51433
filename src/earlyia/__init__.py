"""earlyia: find Type Ia supernovae early in alert streams, with maximum classification from
minimum training."""

from earlyia.errors import EarlyIAError

__version__ = "0.4.0"
__all__ = ["EarlyIAError", "__version__"]
