import sys

from lsr.cli import main

sys.exit(main())
