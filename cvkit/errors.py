"""The named exceptions the library raises.

Every error a user can fix derives from :class:`CvkitError`; its message names the file or
option at fault and says what to do. The CLI prints it as ``Error: ...`` and exits with 2.
"""


class CvkitError(Exception):
    """A problem with the user's input that the user can fix."""


class SourceError(CvkitError):
    """A dataset source that cannot be read or recognised."""


class ManifestError(CvkitError):
    """A dataset directory or one of its files (manifest.csv, classes.json, ...) is wrong."""


class UnsafePath(ManifestError):
    """A path in a CSV or manifest that escapes the folder it must stay inside."""


class TooManyRejected(CvkitError):
    """More inputs were bad than ``--max-rejected`` allows."""


class OutputExists(CvkitError):
    """The output directory already holds results and ``--force`` was not given."""


class OptionError(CvkitError):
    """An option value that cannot work (a size too small, an unknown mode, ...)."""


class UnknownArchitecture(OptionError):
    """An ``--arch`` / ``--from-arch`` name that no registry knows."""


class DeviceUnavailable(OptionError):
    """A ``--device`` that this machine does not have."""


class UnsafeCheckpoint(CvkitError):
    """A checkpoint or weights file whose loading would execute code."""


class TrainingDiverged(CvkitError):
    """The loss became NaN or infinite."""


class DiskFull(CvkitError):
    """A write failed for lack of room: a full disk, a quota, or a file-size limit."""


class UnsafeOutput(OptionError):
    """An ``--out`` that would overwrite or delete an input or files cvkit did not write."""


class Interrupted(CvkitError):
    """The user stopped the command (Ctrl-C); the message says what was kept and how to go on."""


class OutputLocked(OutputExists):
    """Another cvkit process is writing the same output folder right now."""
