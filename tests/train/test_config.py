"""Configs: every recipe file loads and names registered models; overrides are checked."""

import re

import pytest

import tfzoo
from tfzoo import config as cfglib
from tfzoo.config import ConfigError, TrainConfig

CONFIG_FILES = sorted(p for p in cfglib.CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def test_config_dir_has_the_recipes():
    names = {p.stem for p in CONFIG_FILES}
    assert {"tresnet_synthetic", "resnet_synthetic", "tresnet50_yuppp"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_loads_and_names_registered_models(path):
    config = cfglib.load_config_file(str(path))
    for _, stage in cfglib.stage_configs(config):
        assert stage.model in tfzoo.list_models(), stage.model
        lo, hi = stage.stride_range
        assert 1 <= lo <= hi


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'lerning_rate'.*Did you mean learning_rate.*Valid keys:.*batch_size"):
        TrainConfig().replace(lerning_rate=0.1)


def test_values_are_parsed_and_checked():
    c = TrainConfig().replace(**cfglib.parse_assignments(
        ["learning_rate=0.5", "image_size=(64, 32)", "stride_range=[1, 4]", "flip=False"]))
    assert c.learning_rate == 0.5 and c.image_size == (64, 32) and c.stride_range == (1, 4)
    assert c.flip is False
    with pytest.raises(ConfigError, match="batch_size.*cannot parse 'many'"):
        TrainConfig().replace(batch_size="many")
    with pytest.raises(ConfigError, match="batch_size.*expected a number"):
        TrainConfig().replace(batch_size="(1, 2)")
    with pytest.raises(ConfigError, match="expected one of"):
        TrainConfig().replace(optimizer="rmsprop")
    # Issue 11 item 7: types and ranges are checked when the config is built, not in tracing.
    for key, value, expected in (("image_size", "64", "two integers"),
                                 ("image_size", "(64, 0)", "two integers >= 1"),
                                 ("batch_size", "1.5", "an integer >= 1"),
                                 ("epochs", "0", "an integer >= 1"),
                                 ("stride_range", "(3, 2)", "min <= max"),
                                 ("model_overrides", "3", "a dict"),
                                 ("train_streams", "('rgb', 'depth')", "'rgb' and/or 'flow'")):
        with pytest.raises(ConfigError, match=rf"'{key}': got .*expected .*{re.escape(expected)}"):
            TrainConfig().replace(**{key: value})
    with pytest.raises(ConfigError, match="'epochs': got 0"):
        TrainConfig(epochs=0).replace()  # a config file's values are checked too
    with pytest.raises(ConfigError, match="key=value"):
        cfglib.parse_assignments(["learning_rate"])


def test_tresnet_yuppp_is_the_papers_two_stage_recipe():
    config = cfglib.load_config_file("tresnet50_yuppp")
    (n1, spatial), (n2, temporal) = cfglib.stage_configs(config)
    assert spatial.model == "resnet50" and spatial.num_frames == 1
    assert temporal.model == "tresnet50" and temporal.num_frames == 16
    assert temporal.stride_range == (5, 15)  # thesis §7.3.3
    assert temporal.learning_rate == 1e-2 and temporal.momentum == 0.9
    assert temporal.batch_size * temporal.grad_accum_steps == 256 // 32  # videos per batch
    assert spatial.batch_size * spatial.grad_accum_steps == 256
    assert temporal.lr_schedule == "plateau" and temporal.lr_decay == 0.1
    assert temporal.scale_jitter == 0.25 and temporal.border == 0.25 and temporal.flip


def test_stage_keys_are_checked():
    with pytest.raises(ConfigError, match="unknown config key 'frames'"):
        TrainConfig(stages=({"frames": 3},)).replace()


def test_missing_config_file_lists_available(tmp_path):
    with pytest.raises(ConfigError, match="tresnet_synthetic"):
        cfglib.load_config_file("no_such_config")


def test_stresnet_recipe_trains_each_stream_on_its_own_schedule():
    # Table 4.2: appearance 1e-2 (10K) + 1e-3 (10K), motion 1e-2 (30K) + 1e-3 (10K), BN 4 / 86.
    stages = {n.split("-", 1)[1]: c
              for n, c in cfglib.stage_configs(cfglib.load_config_file("stresnet50_ucf101"))}
    assert list(stages) == ["appearance", "motion", "stresnet", "star"]
    rgb, flow = stages["appearance"], stages["motion"]
    assert (rgb.train_streams, rgb.lr_boundaries, rgb.epochs) == (("rgb",), (10,), 20)
    assert (flow.train_streams, flow.lr_boundaries, flow.epochs) == (("flow",), (30,), 40)
    for s in (rgb, flow):
        assert s.model_overrides["rgb_bn_group_size"] == 4
        assert s.model_overrides["flow_bn_group_size"] == 86
        assert s.steps_per_epoch == 1000 and s.batch_size == 256 and s.learning_rate == 1e-2
    assert stages["stresnet"].train_streams is None  # both streams, end to end


def test_config_name_is_the_shipped_recipe_and_a_path_is_a_file(tmp_path, monkeypatch):
    """Issue 24 item 9: --config=NAME is configs/NAME.py even when the current directory holds a
    file or folder of that name; a PATH (a '/' or '.py') is a file, never a recipe."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tresnet50_yuppp").write_text("raise SystemExit('the cwd file ran')\n")
    (tmp_path / "rfcn_synthetic.py").write_text(
        "from tfzoo.config import TrainConfig\nCONFIG = TrainConfig(model='resnet_small', epochs=3)\n")
    assert cfglib.load_config_file("tresnet50_yuppp").model == "tresnet50"
    assert cfglib.load_config_file("rfcn_synthetic").model == "rfcn"  # the shipped recipe
    mine = cfglib.load_config_file("rfcn_synthetic.py")  # a file: the one in the cwd
    assert (mine.model, mine.epochs) == ("resnet_small", 3)
    assert cfglib.load_config_file("./rfcn_synthetic.py") == mine
    with pytest.raises(ConfigError, match=r"'configs/tresnet50_yuppp.py' not found.*"
                                          r"--config=tresnet50_yuppp"):
        cfglib.load_config_file("configs/tresnet50_yuppp.py")  # not relative to this cwd
    with pytest.raises(ConfigError, match=r"'tresnet50_yupp' is not a shipped recipe\. "
                                          r"Did you mean tresnet50_yuppp"):
        cfglib.load_config_file("tresnet50_yupp")
