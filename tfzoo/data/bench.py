"""The old name of `tfzoo.data.throughput_bench`, kept for one release: `python -m tfzoo.data.bench` and
`import tfzoo.data.bench` give that module."""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("tfzoo.data.throughput_bench", run_name="__main__", alter_sys=True)
else:
    from tfzoo.data import throughput_bench

    sys.modules[__name__] = throughput_bench
