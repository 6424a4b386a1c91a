"""EMBER_LOG channels: EMBER_LOG=graph,guards,recompiles,breaks,fusion,kernels prints what
capture and compilation did. A root module, like errors.py, so that every layer may log."""

from __future__ import annotations

import os
import sys

CHANNELS = ("graph", "guards", "recompiles", "breaks", "fusion", "kernels")


def enabled() -> set:
    raw = os.environ.get("EMBER_LOG", "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    return set(CHANNELS) if "all" in names else names


def log(channel: str, message: str) -> None:
    """Print message to stderr when the channel is on (read from the environment each time,
    so tests and users can switch it while running)."""
    if channel in enabled():
        print(f"[ember {channel}] {message}", file=sys.stderr)
