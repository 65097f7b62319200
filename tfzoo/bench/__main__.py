import sys

from tfzoo.bench.cli import run

run(sys.argv)
