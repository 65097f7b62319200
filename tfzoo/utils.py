"""Small helpers shared across tfzoo."""

from __future__ import annotations

import difflib
import inspect
import sys
from typing import Any, Iterable, Sequence

from absl import app

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


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing for tfzoo's programs, `app.run(main, flags_parser=parse_flags)`:
    absl's own usage errors and `--help`/`--helpfull`, and a flag spelled with dashes
    (`--max-frames`, the spelling before the programs moved to absl) read as its underscore
    name (`--max_frames`) for one release, with a one-line note on stderr.

    >>> from absl import flags
    >>> fv = flags.FlagValues()
    >>> _ = flags.DEFINE_integer("max_frames", None, "", flag_values=fv)
    >>> _ = fv(underscore_flags(["prog", "--max-frames=3"], quiet=True))
    >>> fv.max_frames
    3
    """
    return app.parse_flags_with_usage(underscore_flags(argv))


def underscore_flags(argv: list[str], *, quiet: bool = False) -> list[str]:
    """`argv` with each `--some-flag[=value]` spelled `--some_flag[=value]` (up to a `--`)."""
    out = list(argv[:1])
    for i, arg in enumerate(argv[1:], 1):
        if arg == "--":
            out.extend(argv[i:])
            break
        name, eq, value = arg[2:].partition("=")
        if arg.startswith("--") and "-" in name:
            new = "--" + name.replace("-", "_")
            if not quiet:
                print(f"note: --{name} is now spelled {new}; the dashed spelling goes in the next "
                      "release", file=sys.stderr)
            arg = new + eq + value
        out.append(arg)
    return out


def varint(n: int) -> bytes:
    """`n` >= 0 as a protobuf base-128 varint: the framing of the records that tfzoo writes field
    by field (warmup requests without tensorflow-serving-api, streamed video records)."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def markdown_table(lines: Sequence[Sequence[str]]) -> str:
    """A Markdown table of `lines` (the header first, then the rows; cells are strings),
    columns padded to their widest cell: what every bench prints.

    >>> print(markdown_table([("model", "ms"), ("resnet50", "12.5")]))
    | model    | ms   |
    |----------|------|
    | resnet50 | 12.5 |
    """
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def row(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([row(lines[0]), sep] + [row(line) for line in lines[1:]])

