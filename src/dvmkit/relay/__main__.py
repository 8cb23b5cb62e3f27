"""``python -m dvmkit.relay``: the same command as ``dvm relay``."""

from __future__ import annotations

import typer

from dvmkit.cli.relay import relay_command

if __name__ == "__main__":
    typer.run(relay_command)
