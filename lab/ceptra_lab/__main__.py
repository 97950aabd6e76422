"""Allow ``python -m ceptra_lab``."""
import sys

from ceptra_lab.cli import main

sys.exit(main())
