"""`python -m tfzoo.bench --data` reads absl flags like every other program (issue 23 §3) and
finds its default clip in the package, not in the test tree (issue 23 §5)."""

import pytest

from _paths import BIKES
from tfzoo.assets import SAMPLE_VIDEO
from tfzoo.data import throughput_bench


def test_default_clip_is_package_data_and_the_tests_clip():
    assert throughput_bench.DEFAULT_VIDEO == SAMPLE_VIDEO
    assert "tests" not in SAMPLE_VIDEO.relative_to(SAMPLE_VIDEO.parents[2]).parts
    assert SAMPLE_VIDEO.read_bytes() == BIKES.read_bytes()  # tests/data/bikes.mp4 links to it


@pytest.mark.parametrize("args,named", [
    (["--copies=0"], "--copies=0: 0 is not a positive integer"),
    (["--bogus"], "Unknown command line flag 'bogus'"),
    (["--video=/no/such.mp4"], "--video='/no/such.mp4': no such file"),
    (["extra"], "unexpected arguments ['extra']"),
])
def test_bad_flags_are_one_line(args, named, capsys):
    assert throughput_bench.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m tfzoo.bench --data: error: ")
    assert named in err[0]


def test_help_lists_the_flags_with_underscores(capsys):
    assert throughput_bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--video", "--copies", "--clips", "--[no]no_model", "--[no]memory",
                 "--[no]tvl1", "--beam_pipeline_options", "--[no]json"):
        assert flag + ":" in out, flag


def test_old_dashed_spelling_still_parses():
    fv = throughput_bench._flag_values()
    fv(throughput_bench.underscore_flags(["prog", "--no-model", "--copies=3"], quiet=True))
    assert fv.no_model and fv.copies == 3
