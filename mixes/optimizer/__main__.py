"""``python -m refinery.mixes.optimizer mix RUN_DIR --config MIX.yaml --output DIR`` (the ``refinery mix`` verb)."""

from __future__ import annotations

import sys

import refinery.mixes.optimizer.commands  # noqa: F401  (registers the verb before the CLI builds its parser)
from refinery.pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
