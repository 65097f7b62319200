"""Flag parsing for the `python -m serving.*` programs, with absl-py.

Each program defines its flags on its own `flags.FlagValues` (the programs share names such as
`--model_name` and `--timeout`, and tests import several of them into one process), accepts
TF Serving's underscore names in `--flag=value` and `--flag value` forms, prints its help for
`--help`, and answers a wrong argument with one line `PROG: error: ...` (exit code 2).
"""

from __future__ import annotations

import sys

from absl import flags

EXIT_USAGE = 2
_HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def fail(prog: str, message: str):
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def parse(define, prog: str, argv=None, doc: str = "") -> flags.FlagValues:
    """`define(flag_values)` then parse `argv` (default sys.argv[1:]) into those flags."""
    values = flags.FlagValues()
    define(values)
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in _HELP for a in argv):
        print(f"usage: {prog} [--flag=value ...]\n\n{doc.strip()}\n\nflags:\n"
              f"{values.get_help(include_special_flags=False)}")
        sys.exit(0)
    try:
        rest = values([prog, *argv])
    except flags.Error as e:
        fail(prog, e)
    if len(rest) > 1:
        fail(prog, f"unexpected arguments {rest[1:]}; every option is a --flag")
    return values
