"""Shared test setup: quiet TensorFlow, deterministic seeds, the real clip's path."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one xdist worker per core: with TensorFlow's default pools (one thread
    # per core each) the workers oversubscribe the CPU. On the shared 2-core machine, a quarter
    # of the suite took 460 s with default pools and 325 s with one thread each (serial: 380 s;
    # same CPU time). Inherited by the CLIs the tests start.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from tfzoo.errors import quiet_tensorflow_start_up  # noqa: E402

quiet_tensorflow_start_up()  # xdist workers' TF start-up lines would land in the CI log

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _paths import BIKES  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def bikes_path() -> Path:
    return BIKES


@pytest.fixture(scope="module")
def keras_resnet50():
    """keras.applications' ResNet50 with random weights and BN statistics (the backbone and
    R-FCN transplant tests)."""
    keras.utils.set_random_seed(1)
    model = keras.applications.ResNet50(weights=None, include_top=False)
    # Random BN statistics too, so the transplant of moving averages is exercised.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    return model


@pytest.fixture
def absl_main():
    """`absl_main(module, argv) -> exit code`: an absl program's `main` run in this process as
    `app.run(main, flags_parser=tfzoo.utils.parse_flags)` runs it (flags defined by the module's
    `define_flags`, parsed, removed afterwards so that the next program may define its own; a
    parsing error is printed as absl prints it, exit code 1)."""
    import sys

    from absl import flags

    from tfzoo.utils import underscore_flags

    def run(module, argv, prog="prog"):
        FLAGS = flags.FLAGS
        before = set(FLAGS)
        module.define_flags()
        added = set(FLAGS) - before
        try:
            try:
                rest = FLAGS(underscore_flags([prog, *argv], quiet=True))
            except flags.Error as e:
                print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
                return 1
            return module.main(rest) or 0
        finally:
            FLAGS.unparse_flags()
            for name in added:
                delattr(FLAGS, name)

    return run


# Files that take the longest on 2 cores, longest first (measured per file in `make test`,
# session 9). xdist's loadfile hands out whole files; `make test` keeps this order (--no-loadscope-reorder) instead
# of xdist's "most tests first", which left one-test files of a minute or two for the end while
# the other worker idled. Files not listed follow in collection order.
LONGEST_FIRST = (
    "models/test_models_common.py", "export/test_export.py", "predict/test_predict.py",
    "flow/test_flow.py", "models/test_fusion_models.py", "models/test_stresnet_mulnet.py",
    "cli/test_cli_errors.py", "visualize/test_visualize.py", "models/test_dt.py",
    "models/test_backbone.py", "data/test_data_prepare.py", "package/test_docstrings.py",
    "train/test_train.py", "serving/test_serving_hostile.py", "models/test_rfcn.py",
    "serving/test_serving_robustness.py", "data/test_data_service.py",
    "data/test_data_readers.py", "data/test_data_packed.py", "cli/test_bench.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    here = Path(__file__).parent

    def key(item):
        rel = Path(str(item.fspath)).resolve().relative_to(here.resolve()).as_posix()
        return rank.get(rel, len(rank))

    items.sort(key=key)  # stable: the rest keep their order
