"""``python -m paddle_rep``: the ``paddle-rep`` command line."""

import sys

from .cli import main

sys.exit(main())
