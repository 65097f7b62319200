"""The built wheel, installed into a fresh venv: it adds only `tfzoo` to site-packages, its
console scripts run, and an export made through the installed package loads in TensorFlow.

The venv reuses this environment's dependencies (a .pth line added after the install, so pip
never sees them) and the wheel is built without build isolation (setuptools from the `test`
extra): the test needs no network.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _paths import REPO

SOURCES = ("tfzoo", "export", "serving", "configs", "pyproject.toml", "README.md")


def _pyproject():
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _run(cmd, ok=(0,), **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                         timeout=600, **kwargs)
    assert res.returncode in ok, f"{cmd}: {res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    return res


# absl's --help prints the flags and exits with status 1
HELP = (0, 1)


def test_every_package_is_listed():
    """pyproject lists the packages by hand (the mapped folders cannot be found by `find`): a
    new subpackage of tfzoo must be added there or the wheel would miss it."""
    tool = _pyproject()["tool"]["setuptools"]
    mapped = {name: REPO / folder for name, folder in tool["package-dir"].items()}
    on_disk = {".".join(p.relative_to(REPO).parts[:-1])
               for name in ("__init__.py", "__main__.py") for p in (REPO / "tfzoo").rglob(name)
               if "__pycache__" not in p.parts}
    assert set(tool["packages"]) == on_disk | set(mapped)
    from tfzoo._checkout import MAPPED

    assert {k: REPO / v for k, v in MAPPED.items()} == mapped
    scripts = _pyproject()["project"]["scripts"]
    from tfzoo.scripts import PROGRAMS

    assert set(scripts) == set(PROGRAMS)
    assert all(v == f"tfzoo.scripts:{k[len('tfzoo-'):].replace('-', '_')}" for k, v in scripts.items())


def test_checkout_sees_installed_names():
    import tfzoo.configs
    import tfzoo.export.saved_model
    from tfzoo.config import CONFIG_DIR

    assert Path(tfzoo.export.saved_model.__file__) == REPO / "export" / "saved_model.py"
    assert CONFIG_DIR == REPO / "configs" == Path(tfzoo.configs.__file__).parent
    # the documented top-level spelling keeps working from the repository root
    res = _run([sys.executable, "-m", "export", "--help"], HELP, cwd=REPO)
    assert "--export_dir" in res.stdout


@pytest.mark.e2e
def test_wheel_installs_only_tfzoo(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, src / name,
                                                                     **({"ignore": ignore} if (REPO / name).is_dir() else {}))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-w", tmp_path / "dist", src])
    wheel, = (tmp_path / "dist").glob("tfzoo-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    before = set(os.listdir(site))
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
          wheel])
    added = set(os.listdir(site)) - before
    assert {a for a in added if not a.endswith(".dist-info")} == {"tfzoo"}, added
    assert len(added) == 2, added
    for folder in ("export", "serving", "configs"):
        assert (site / "tfzoo" / folder / "__init__.py").is_file()
    assert (site / "tfzoo" / "predict" / "__main__.py").is_file()  # the program's folder
    assert (site / "tfzoo" / "serving" / "models.config").is_file()  # package data
    assert (site / "tfzoo" / "assets" / "bikes.mp4").is_file()  # the benches' and demo's clip
    scripts = set(_pyproject()["project"]["scripts"])
    assert scripts <= set(os.listdir(venv / "bin"))

    # The dependencies come from this environment, after the install.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"  # not the repository: nothing may come from the checkout
    work.mkdir()
    res = _run([venv / "bin" / "tfzoo-export", "--help"], HELP, cwd=work)
    assert "--export_dir" in res.stdout

    model_dir, export_dir = work / "run", work / "exports"
    made = _run([py, "-c", textwrap.dedent(f"""
        import json, keras, numpy as np, tfzoo
        import tfzoo.config, tfzoo.export
        from tfzoo.rundir import RunInfo, save_model, write_run_info
        assert tfzoo.__file__.startswith({str(site)!r}), tfzoo.__file__
        assert tfzoo.export.__file__.startswith({str(site)!r}), tfzoo.export.__file__
        assert tfzoo.config.load_config_file("tresnet_synthetic").model == "tresnet_small"
        keras.utils.set_random_seed(3)
        model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
        write_run_info({str(model_dir)!r}, RunInfo(model="tresnet_small",
            model_config=model.get_config(), class_names=["a", "b", "c"], num_frames=4,
            image_size=(32, 32)))
        save_model(model, {str(model_dir)!r})
        clip = np.random.RandomState(0).randint(0, 256, (1, 4, 32, 32, 3)).astype("float32")
        print(json.dumps(keras.ops.softmax(model(clip, training=False)).numpy().tolist()))
        """)], cwd=work)
    expected = np.array(ast.literal_eval(made.stdout.strip().splitlines()[-1]))
    res = _run([venv / "bin" / "tfzoo-export", f"--model_dir={model_dir}",
                f"--export_dir={export_dir}", "--nowarmup"], cwd=work)
    path = res.stdout.strip().splitlines()[-1]
    assert path == str(export_dir / "tresnet_small" / "1")
    # TensorFlow alone (no tfzoo) loads and runs the export
    loaded = _run([py, "-c", textwrap.dedent(f"""
        import json, sys, numpy as np, tensorflow as tf
        m = tf.saved_model.load({path!r})
        clip = np.random.RandomState(0).randint(0, 256, (1, 4, 32, 32, 3)).astype("uint8")
        out = m.signatures["serving_default"](rgb=tf.constant(clip))
        assert "tfzoo" not in sys.modules
        print(json.dumps(out["probabilities"].numpy().tolist()))
        """)], cwd=work)
    got = np.array(ast.literal_eval(loaded.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
