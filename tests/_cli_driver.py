"""Runs an absl CLI's `main` on several argument lists in one process (tests/cli/test_cli_errors.py).

    python tests/_cli_driver.py MODULE PROG '[["--flag=1"], ...]'

For each list: flags are reset and parsed as `app.run` parses them (a parsing error is printed
as absl prints it, exit code 1), `main` runs, and stderr is captured; an exception that escapes
`main` is printed as a traceback, as the real CLI would. Prints one JSON list of
{"code", "stderr"}. Equivalent to one process per list, without re-importing TensorFlow.
"""

import contextlib
import importlib
import io
import json
import sys
import traceback

from absl import app, flags


def run_all(module_name: str, prog: str, argvs: list[list[str]]) -> list[dict]:
    module = importlib.import_module(module_name)
    if hasattr(module, "define_flags"):
        module.define_flags()
    FLAGS = flags.FLAGS
    results = []
    for argv in argvs:
        FLAGS.unparse_flags()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                try:
                    rest = FLAGS([prog, *argv])
                except flags.Error as e:
                    print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
                    code = 1
                else:
                    code = module.main(rest) or 0
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else 1
            except app.UsageError as e:
                print(e, file=sys.stderr)
                code = 1
            except BaseException:  # noqa: BLE001 - recorded as the real CLI would print it
                traceback.print_exc()
                code = 1
        results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
    return results


if __name__ == "__main__":
    sys.path.insert(0, ".")
    print("\n@@RESULTS@@" + json.dumps(run_all(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))))
