import sys

from raydsbs.cli import main

sys.exit(main())
