import sys

from tfzoo.bench.cli import main

sys.exit(main())
