"""Errors raised on bad input. Each one names the file or key, what was expected and what was found."""


class SmartFedError(Exception):
    """Base class for every error this package raises on bad input."""


class AdapterError(SmartFedError):
    """A PEFT adapter folder is missing, corrupt, unsupported, or does not fit the base model."""


class PoolFileError(SmartFedError):
    """A saved expert pool file is corrupt or does not fit the model it is attached to."""


class RouterStateError(SmartFedError):
    """A router state dict has missing, unexpected or mis-shaped entries."""


class ConfigError(SmartFedError):
    """A run configuration key is unknown or has a bad value."""


class RunFailed(SmartFedError):
    """Too few client updates were accepted in a round to go on."""


class RunBusy(SmartFedError):
    """Another process is writing the run folder (a second sweep worker, a resume of a live run)."""
