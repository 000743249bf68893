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


class OutputError(FnacError):
    """An output file or folder cannot be written (full disk, read-only file system, no permission)."""


def os_error_reason(e: OSError) -> str:
    """The cause of a failed file operation in a few words: 'no space left on device', 'read-only file
    system', 'permission denied', ... (the system's text for other errors)."""
    import errno
    import os

    words = {
        errno.ENOSPC: "no space left on device",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied (operation not permitted)",
        errno.EDQUOT: "disk quota exceeded",
    }
    if e.errno in words:
        return words[e.errno]
    if e.errno:
        return os.strerror(e.errno).lower()
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class IdListNotFoundError(DataError):
    """The id list of a split does not exist (neither the configured file nor any default name).

    Raised where the message is made (``fnac.data.common``) so that callers that may skip a split
    without a list (``fnac cache``) branch on the type, never on the message."""


class NoAudioTrackError(MediaError):
    """A media file has no audio track (as opposed to an audio track that cannot be decoded)."""
