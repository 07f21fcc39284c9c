"""Entry point: ``python -m demo_app [--screenshot PATH] [--run-for SECONDS]``."""

from __future__ import annotations

import sys

from demo_app.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
