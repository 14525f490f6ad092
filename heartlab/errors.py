"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class HeartlabError(Exception):
    """A problem with the user's input (a file, a config, a binding), stated so it can be fixed."""


class BeatFileError(HeartlabError):
    """A beat file that does not hold what heartlab expects (schema, labels or values)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""


def report(exc: HeartlabError) -> int:
    """Print a user error as one ``error: ...`` line on stderr; returns the exit code 2.

    gin appends "In call to configurable ..." lines to errors raised inside configurables; only the first
    line, which states the problem, is shown.
    """
    import sys

    lines = str(exc).splitlines() or [type(exc).__name__]
    print(f"error: {lines[0]}", file=sys.stderr)
    return 2
