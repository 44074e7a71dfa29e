"""``python -m paddle_rep.apps``: the ``paddle-rep`` command line."""

import sys

from .cli import main

sys.exit(main())
