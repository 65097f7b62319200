"""The old name of `tfzoo.detection.dt_blocks_bench`, kept for one release: `python -m tfzoo.detection.bench` and
`import tfzoo.detection.bench` give that module."""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("tfzoo.detection.dt_blocks_bench", run_name="__main__", alter_sys=True)
else:
    from tfzoo.detection import dt_blocks_bench

    sys.modules[__name__] = dt_blocks_bench
