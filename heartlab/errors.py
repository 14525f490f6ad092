"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class HeartlabError(Exception):
    """A problem with the user's input (a file, a config, a binding), stated so it can be fixed."""


class BeatFileError(HeartlabError):
    """A beat file that does not hold what heartlab expects (schema, labels or values)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""
