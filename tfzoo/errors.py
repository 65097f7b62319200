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

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

EXIT_USER_ERROR = 2

# absl's C++ log line prefix: severity letter (Info, Warning, Error, Fatal) and MMDD.
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} ")
_ABSL_PREINIT = "WARNING: All log messages before absl::InitializeLog() is called"


class TfzooError(ValueError):
    """A user mistake: the message names the bad value, what was expected and a way out."""


def report(error: BaseException, prog: str) -> int:
    """Prints `prog: error: <one line>` to stderr and returns the exit code (2)."""
    message = " ".join(str(error).split("\n")).strip() or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def quiet_tensorflow_start_up() -> None:
    """Filters TensorFlow's C++ start-up lines by TF_CPP_MIN_LOG_LEVEL when it gets imported.

    A CLI that ends in `report()`'s one line should print nothing else. TensorFlow 2.21 logs
    its start-up (oneDNN, CUDA probing) through absl before `absl::InitializeLog()`, and those
    lines ignore TF_CPP_MIN_LOG_LEVEL. This makes the first `import tensorflow` (whoever does
    it, and only if it happens: a CLI that fails before needing TensorFlow stays fast) run with
    file descriptor 2 captured, together with the physical-device probe; the captured text is
    written back without the absl lines below the level (default "2": errors and fatal lines
    stay; a user's own setting wins) and without the probe's "failed call to cuInit" when no
    GPU was found (TF's way of saying "no GPU", which it also logs as an info line). Anything
    else written meanwhile (Python warnings, an import error) comes back unchanged. Installed by
    `python -m tfzoo.*` (tfzoo/__init__.py) and the export and serving entry points.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the package
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def quiet_exec_module(module):
                with _filtered_stderr() as probe:
                    exec_module(module)
                    # Physical devices only: the runtime stays unconfigured (threads, devices).
                    probe["gpus"] = module.config.list_physical_devices("GPU")

            spec.loader.exec_module = quiet_exec_module
        return spec


@contextlib.contextmanager
def _filtered_stderr():
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    probe = {"gpus": None}
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2: nothing to filter
        yield probe
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield probe
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = []
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                m = _ABSL_LINE.match(line)
                if m and ("IWEF".index(m.group(1)) < level
                          or (probe["gpus"] == [] and "failed call to cuInit" in line)):
                    continue
                if line.startswith(_ABSL_PREINIT) and level > 0:
                    continue
                kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class InputSpecError(TfzooError):
    """A model or layer input of the wrong rank, shape, channel count or dtype."""


class DetectError(TfzooError):
    """A model that does not offer the D&T detection contract, or a bad detection argument."""


class DataError(TfzooError):
    """Unreadable or inconsistent data (with the offending path or value in the message)."""
