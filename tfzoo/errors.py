"""The one base class of every error tfzoo raises for a user mistake.

Every tfzoo error type (`ConfigError`, `UnknownModelError`, `InputSpecError`, `DataError`,
`TransplantError`, ...) derives from `TfzooError`, so a program that drives tfzoo can catch
them all with one `except tfzoo.TfzooError`, and every command-line entry point turns one into
a single line on stderr (the bad value, what was expected, a hint) and exit code 2 instead of
a traceback. It derives from ValueError because every such mistake is a bad value.

    >>> import tfzoo
    >>> try:
    ...     tfzoo.create_model("tresnet5O")
    ... except tfzoo.TfzooError as e:
    ...     print(str(e).split(".")[0])
    unknown model 'tresnet5O'
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2


class TfzooError(ValueError):
    """A user mistake: the message names the bad value, what was expected and a way out."""


def report(error: BaseException, prog: str) -> int:
    """Prints `prog: error: <one line>` to stderr and returns the exit code (2)."""
    message = " ".join(str(error).split("\n")).strip() or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


class DataError(TfzooError):
    """Unreadable or inconsistent data (with the offending path or value in the message)."""
