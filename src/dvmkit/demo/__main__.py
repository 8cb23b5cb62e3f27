"""``python -m dvmkit.demo [--once] [--port N] [--mint-bin PATH]``: the session of ``dvm demo``."""

from __future__ import annotations

import sys

from dvmkit.demo import main

if __name__ == "__main__":
    sys.exit(main())
