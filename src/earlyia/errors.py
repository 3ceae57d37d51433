"""One exception hierarchy for everything earlyia raises on purpose.

Every message names the file, object or argument at fault and says what to fix.
Catch :class:`EarlyIAError` to handle all of them; the subclasses also inherit the
matching built-in (``ValueError``, ``FileNotFoundError``...) so generic handlers work.
"""

from __future__ import annotations

from dataclasses import dataclass


class EarlyIAError(Exception):
    """Base class of every error earlyia raises deliberately."""


class InputError(EarlyIAError, ValueError):
    """Bad input data: a file, a column, an object's light curve or an argument."""

    def __init__(self, message: str, *, source: str | None = None, object_id: str | None = None):
        prefix = []
        if source:
            prefix.append(str(source))
        if object_id is not None:
            prefix.append(f"object {object_id}")
        message = " ".join(str(message).split("\n")).strip()
        super().__init__(f"{': '.join(prefix)}: {message}" if prefix else message)
        self.source = source
        self.object_id = object_id


class FormatError(InputError):
    """A file that cannot be read: unknown format, corrupted or truncated."""


class SchemaError(InputError):
    """A table without the columns (or types) that its format requires."""


class DataNotFoundError(EarlyIAError, FileNotFoundError):
    """A file or the shared data directory is missing."""


class ModelError(EarlyIAError):
    """A model artifact that cannot be used: tampered, unknown format, wrong features."""


class FeatureMismatchError(ModelError, ValueError):
    """The features a caller computes differ from the ones the model was trained on."""


class IntegrityError(ModelError):
    """A file whose content hash differs from the recorded one."""


class ConfigError(EarlyIAError, ValueError):
    """A missing or invalid configuration value (environment variable, option)."""


class RemoteError(EarlyIAError):
    """A remote service (webhook, TNS API) refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = True):
        super().__init__(message)
        self.status = status
        self.permanent = permanent


@dataclass(frozen=True)
class Problem:
    """One bad object or alert in a batch: reported, and the rest of the batch goes on."""

    source: str
    object_id: str | None
    reason: str

    def __str__(self) -> str:
        where = self.source if self.object_id is None else f"{self.source}: object {self.object_id}"
        return f"{where}: {self.reason}"
