"""Parses documented command lines with each program's own flag parser, without running them
(tests/cli/test_docs_commands.py).

    python tests/_parse_only.py '[["tfzoo.train", ["--model=tresnet", ...]], ...]'

Each program runs as `python -m MODULE ARGS` runs it (`runpy`, `__main__`), up to the moment it
hands its command line to its parser: absl's `FlagValues.__call__` (whichever FlagValues the
program uses: the global FLAGS under `app.run`, its own under `tfzoo.bench`'s dispatch,
serving's `cli.parse`, prepare's and the data service's roles) or argparse's `parse_args`. There the parse happens for real: unknown
flags, bad values, enum and required-flag validators fail as they would for a user; a parse
that succeeds stops the program before `main`. Arguments left over after the flags (absl hands
them to `main`) are reported too. Prints one JSON list of {"ok", "error", "rest"}. Equivalent
to one `python -m` per command without importing TensorFlow every time.
"""

import argparse
import contextlib
import io
import json
import runpy
import sys

from absl import flags


class Parsed(BaseException):  # not an Exception: no program's `except Exception` swallows it
    def __init__(self, rest):
        super().__init__()
        self.rest = rest


_original_call = flags.FlagValues.__call__
_original_parse_args = argparse.ArgumentParser.parse_args


def _parse_then_stop(self, argv, known_only=False):
    rest = _original_call(self, argv, known_only)
    if known_only:  # a peek (absl's own), not the program's parse
        return rest
    raise Parsed(list(rest[1:]))


def _argparse_then_stop(self, args=None, namespace=None):
    # the programs still on argparse (tfzoo.data.throughput_bench): the same stop
    _original_parse_args(self, args, namespace)
    raise Parsed([])


def parse_only(module: str, argv: list[str]) -> dict:
    FLAGS = flags.FLAGS
    before = set(FLAGS)
    saved_argv = sys.argv
    sys.argv = [module, *argv]
    err = io.StringIO()
    result = {"ok": False, "error": "", "rest": []}
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        result["error"] = "the program finished without parsing any flags"
    except Parsed as p:
        result["rest"] = p.rest
        result["ok"] = not p.rest
        if p.rest:
            result["error"] = f"arguments left over after the flags: {p.rest}"
    except SystemExit as e:
        result["error"] = f"exit {e.code}: {err.getvalue().strip()[-800:]}"
    except BaseException as e:  # noqa: BLE001 - reported as the test's failure message
        result["error"] = f"{type(e).__name__}: {e}; {err.getvalue().strip()[-800:]}"
    finally:
        sys.argv = saved_argv
        FLAGS.unparse_flags()
        for name in set(FLAGS) - before:  # the next program defines its own
            delattr(FLAGS, name)
    return result


if __name__ == "__main__":
    sys.path.insert(0, ".")
    flags.FlagValues.__call__ = _parse_then_stop
    argparse.ArgumentParser.parse_args = _argparse_then_stop
    commands = json.loads(sys.argv[1])
    print("\n@@RESULTS@@" + json.dumps([parse_only(m, a) for m, a in commands]))
