"""The old name of `tfzoo.flow.tvl1_bench`, kept for one release: `python -m tfzoo.flow.bench` and
`import tfzoo.flow.bench` give that module."""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("tfzoo.flow.tvl1_bench", run_name="__main__", alter_sys=True)
else:
    from tfzoo.flow import tvl1_bench

    sys.modules[__name__] = tvl1_bench
