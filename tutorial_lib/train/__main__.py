"""``python -m tutorial_lib.train`` (and ``torchrun -m tutorial_lib.train``)."""

import sys

from .cli import main

sys.exit(main())
