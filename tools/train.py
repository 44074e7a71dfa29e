"""Train a registry model on the shipped digits with Paddle; the script ``paddle.distributed.launch`` runs.

    python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py --arch rep_tiny --out runs/tiny

See ``paddle_rep.apps.train`` for the options; ``paddle-rep train`` is the same on one process.
"""

import sys

from paddle_rep.apps.train import main

if __name__ == "__main__":
    sys.exit(main())
