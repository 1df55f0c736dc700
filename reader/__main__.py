"""`python -m reader` is `sukumo-reader` (for a venv whose scripts are not on PATH)."""

import sys

from reader.cli import main

sys.exit(main())
