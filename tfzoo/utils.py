"""Small helpers shared across tfzoo."""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from tfzoo.errors import TfzooError


def check_choice(what: str, value: Any, choices: Iterable, *, hint: str = "",
                 error: type[TfzooError] = TfzooError) -> Any:
    """Returns `value` if it is one of `choices`, else raises `error` (a TfzooError) naming the
    bad value, every choice and the closest ones (a misspelling is the usual cause).

    >>> check_choice("pooling", "avg", ("max", "avg"))
    'avg'
    >>> check_choice("pooling", "medain", ("max", "avg", "median"))
    Traceback (most recent call last):
    ...
    tfzoo.errors.TfzooError: unknown pooling 'medain'; expected one of ['max', 'avg', 'median']. Did you mean 'median'?
    """
    choices = tuple(choices)
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=3, cutoff=0.5)
    close = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise error(f"unknown {what} {value!r}; expected one of {list(choices)}.{close}"
                + (f" {hint}" if hint else ""))


def check_arguments(what: str, fn, kwargs: dict, *, also: Iterable[str] = ("name",)) -> None:
    """Raises a TfzooError naming every key of `kwargs` that `fn` does not take (its `**kwargs`
    catch-all does not count: Keras would drop such a key), with the closest names.

    >>> def build(num_classes=10, width=64, **kwargs): ...
    >>> check_arguments("build", build, {"num_clases": 5})
    Traceback (most recent call last):
    ...
    tfzoo.errors.TfzooError: build: unknown argument 'num_clases' (did you mean 'num_classes'?); it takes name, num_classes, width
    """
    import inspect

    params = inspect.signature(fn).parameters
    known = [k for k, p in params.items()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and k != "self"]
    known += [k for k in also if k not in known]
    unknown = [k for k in kwargs if k not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise TfzooError(f"{what}: unknown argument{'s' if len(unknown) > 1 else ''} "
                     f"{', '.join(hints)}; it takes {', '.join(sorted(known))}")
