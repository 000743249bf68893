"""Exceptions that speak to the user. Every message names the file or field and the problem.

Imports nothing from fnac, so every layer may raise these.
"""


class FnacError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class ConfigError(FnacError):
    """A configuration key is unknown, has the wrong type, or an override is malformed."""


class MediaError(FnacError):
    """A media file (image, audio, video) is missing, unreadable, empty, corrupt or unsupported."""


class DataError(FnacError):
    """A dataset, id list or annotation file is missing or has an unexpected structure."""


class CheckpointError(FnacError):
    """A checkpoint is missing, corrupt, or its keys do not match the model."""
