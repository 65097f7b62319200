"""Issue 11: user mistakes in the Python API are one clear TfzooError, never a silent wrong model.

(The command-line table is tests/cli/test_cli_errors.py.)
"""

import keras
import numpy as np
import pytest

import tfzoo
from tfzoo.registry import get_entry
from _paths import REPO


def test_every_error_type_is_a_tfzoo_error():
    from export.saved_model import ExportError
    from tfzoo.backbones.transplant import TransplantError
    from tfzoo.config import ConfigError
    from tfzoo.data.base import DataError
    from tfzoo.flow.solver import FlowInputError
    from tfzoo.models.base import InputSpecError
    from tfzoo.rundir import RunDirError
    from tfzoo.train import TrainError

    for cls in (TransplantError, ConfigError, DataError, FlowInputError, InputSpecError,
                RunDirError, TrainError, ExportError, tfzoo.UnknownModelError):
        assert issubclass(cls, tfzoo.TfzooError), cls
    assert issubclass(tfzoo.TfzooError, ValueError)  # `except ValueError` callers keep working
    with pytest.raises(KeyError):  # and an unknown name is still a KeyError
        tfzoo.create_model("tresnet5O")


def test_check_choice_names_the_value_the_choices_and_the_close_one():
    from tfzoo.utils import check_choice

    assert check_choice("fusion", "sum", ("sum", "max")) == "sum"
    with pytest.raises(tfzoo.TfzooError, match=r"unknown fusion 'sun'; expected one of "
                                               r"\['sum', 'max'\]. Did you mean 'sum'\?"):
        check_choice("fusion", "sun", ("sum", "max"))


def test_misspelt_constructor_argument_is_an_error_with_the_close_match():
    """Issue 11 item 1: `num_clases=101` used to build a 20-class model without a word."""
    with pytest.raises(tfzoo.TfzooError, match=r"'num_clases' \(did you mean 'num_classes'\?\)"):
        tfzoo.create_model("tresnet_small", num_clases=101)
    with pytest.raises(tfzoo.TfzooError, match=r"'fuson' \(did you mean 'fusion'\?\)"):
        tfzoo.create_model("stresnet50", fuson="multiply")
    model = tfzoo.create_model("resnet_small", blocks=(1, 1, 1, 1), width=4, num_classes=3)
    assert model.output_shape == (None, 3)
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config
    with pytest.raises(tfzoo.TfzooError, match=r"from_config: unknown argument 'widht'"):
        type(model).from_config({**config, "widht": 4})


@pytest.fixture(scope="module")
def keras_resnet50_with_top():
    # keras' default include_top=True: the 1000-way "predictions" layer is part of the source.
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3))


def test_weights_with_the_imagenet_classifier_transplant_the_backbone(keras_resnet50_with_top):
    """Issue 11 item 3: a keras.applications ResNet with its classifier used to fail with
    "Layer predictions weight shape (2048, 20) is not compatible with (2048, 1000)"."""
    src = keras_resnet50_with_top
    model = tfzoo.create_model("tresnet50", num_classes=20, weights=src)
    for name in ("conv1_conv", "conv3_block4_2_conv", "conv5_block3_3_conv"):
        ours = model.get_layer(name).get_weights()
        theirs = src.get_layer(name).get_weights()
        np.testing.assert_array_equal(ours[0].reshape(theirs[0].shape), theirs[0])
    np.testing.assert_array_equal(model.get_layer("conv5_block3_3_bn").get_weights()[2],
                                  src.get_layer("conv5_block3_3_bn").get_weights()[2])
    assert model.output_shape[-1] == 20  # its own classifier, not ImageNet's


def test_source_of_another_depth_is_an_error(keras_resnet50_with_top):
    """Issue 11 item 4: ResNet-50 weights into a 101-layer model used to leave conv4_block7..23
    at random without a word."""
    with pytest.raises(tfzoo.TfzooError, match=r"\(3, 4, 6, 3\).*\(3, 4, 23, 3\).*wrong depth"):
        tfzoo.create_model("tresnet101", num_classes=20, weights=keras_resnet50_with_top)


@pytest.fixture(scope="module")
def stresnet():
    entry = get_entry("stresnet50")
    model = tfzoo.create_model("stresnet50", **entry.test_overrides)
    flow_channels = {i.name: i.shape[-1] for i in model.inputs}["flow"]
    rgb = np.random.default_rng(0).uniform(0, 255, (1, 4, 32, 32, 3)).astype("float32")
    flow = np.random.default_rng(1).normal(size=(1, 4, 32, 32, flow_channels)).astype("float32")
    return model, rgb, flow


@pytest.mark.parametrize("bad,message", [
    ("rgb", r"takes 2 inputs .*got one ndarray of shape \(1, 4, 32, 32, 3\): "
            r"pass \{'rgb': \.\.\., 'flow': \.\.\.\}"),
    ("[rgb]", r"got a list of 1: pass \{'rgb': \.\.\., 'flow': \.\.\.\}"),
    ("[rgb, flow]", r"got a list of 2: pass \{'rgb': \.\.\., 'flow': \.\.\.\}"),
    ("short_flow", r"'flow' has 3 frames .* but 'rgb' has 4 .*same clip"),
])
def test_two_stream_inputs_say_what_to_pass(stresnet, bad, message):
    """Issue 11 item 12: a tensor or a list got "input 'flow': got 3 channels", and clips of
    different lengths a TF InvalidArgumentError."""
    model, rgb, flow = stresnet
    value = {"rgb": rgb, "[rgb]": [rgb], "[rgb, flow]": [rgb, flow],
             "short_flow": {"rgb": rgb, "flow": flow[:, :3]}}[bad]
    with pytest.raises(tfzoo.TfzooError, match=message):
        model(value)
    out = model({"rgb": rgb, "flow": flow})  # the right call works
    assert np.isfinite(np.asarray(out["fused"])).all()


def test_shell_examples_in_the_docs_paste_into_bash():
    """Issue 11 item 15: `--set image_size=(64,64)` in README was a bash syntax error."""
    import re
    import subprocess

    repo = REPO
    blocks = 0
    for page in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for m in re.finditer(r"```(?:sh|bash|shell)\n(.*?)```", page.read_text(), re.S):
            blocks += 1
            check = subprocess.run(["bash", "-n"], input=m.group(1), capture_output=True,
                                   text=True)
            assert check.returncode == 0, f"{page.name}: {check.stderr}"
    assert blocks >= 5
