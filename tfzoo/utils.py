"""Small helpers shared across tfzoo."""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from tfzoo.errors import TfzooError


def check_choice(what: str, value: Any, choices: Iterable) -> Any:
    """Returns `value` if it is one of `choices`, else raises a TfzooError naming the bad value,
    every choice and the closest ones (a misspelling is the usual cause)."""
    choices = tuple(choices)
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise TfzooError(f"unknown {what} {value!r}; expected one of {list(choices)}.{hint}")
