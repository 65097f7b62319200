"""The old name of `tfzoo.visualize.maximize_bench`, kept for one release: `python -m tfzoo.visualize.bench` and
`import tfzoo.visualize.bench` give that module."""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("tfzoo.visualize.maximize_bench", run_name="__main__", alter_sys=True)
else:
    from tfzoo.visualize import maximize_bench

    sys.modules[__name__] = maximize_bench
