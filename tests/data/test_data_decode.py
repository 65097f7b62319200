"""Decoding the real clip with PyAV: frame counts, ranges, rescaling, and failures."""

import numpy as np
import pytest

from tfzoo.data.base import DataError
from tfzoo.video import read_video, scaled_size, video_info


def test_video_info(bikes_path):
    assert video_info(bikes_path) == (250, 25.0, 272, 640)


def test_read_all_frames_native_size(bikes_path):
    v = read_video(bikes_path, short_side=None)
    assert v.dtype == np.uint8 and v.shape == (250, 272, 640, 3)
    # real content: frames differ over time and are not blank
    assert v.std() > 10
    assert np.abs(v[0].astype(int) - v[-1].astype(int)).mean() > 5


def test_frame_range_matches_full_decode(bikes_path):
    full = read_video(bikes_path, short_side=None, num_frames=40)
    part = read_video(bikes_path, start=30, num_frames=7, short_side=None)
    assert part.shape[0] == 7
    np.testing.assert_array_equal(part, full[30:37])


def test_range_past_end_is_clipped_and_past_last_frame_raises(bikes_path):
    tail = read_video(bikes_path, start=245, num_frames=20, short_side=32)
    assert tail.shape[0] == 5
    with pytest.raises(DataError, match="past the last frame"):
        read_video(bikes_path, start=250, short_side=32)


def test_short_side_rescale(bikes_path):
    v = read_video(bikes_path, num_frames=3)  # default short side 256
    assert v.shape == (3, 256, round(640 * 256 / 272), 3)
    # the rescaled frame looks like a resized native frame (same content, not a crop)
    import cv2

    native = read_video(bikes_path, num_frames=1, short_side=None)[0]
    ref = cv2.resize(native, (v.shape[2], 256), interpolation=cv2.INTER_AREA)
    assert np.abs(ref.astype(int) - v[0].astype(int)).mean() < 3
    assert scaled_size(640, 272, 256) == (602, 256)  # portrait: width is the short side


def test_max_frames_guard(bikes_path):
    assert read_video(bikes_path, short_side=32, max_frames=12).shape[0] == 12


def test_corrupt_file_raises_data_error_naming_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="corrupt.mp4"):
        read_video(bad)
    with pytest.raises(DataError, match="corrupt.mp4"):
        video_info(bad)


def test_empty_and_missing_files_raise(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.avi.*empty"):
        read_video(empty)
    with pytest.raises(DataError, match="no such file"):
        video_info(tmp_path / "missing.mp4")


def test_truncated_file_never_raises_anything_but_data_error(bikes_path, tmp_path):
    data = bikes_path.read_bytes()
    for frac in (0.02, 0.5):
        cut = tmp_path / f"cut{frac}.mp4"
        cut.write_bytes(data[: int(len(data) * frac)])
        try:
            v = read_video(cut, short_side=32)
        except DataError as e:
            assert cut.name in str(e)
        else:
            assert 0 < v.shape[0] < 250


def test_bad_arguments():
    with pytest.raises(ValueError, match="start"):
        read_video("x.mp4", start=-1)
    with pytest.raises(ValueError, match="num_frames"):
        read_video("x.mp4", num_frames=0)
