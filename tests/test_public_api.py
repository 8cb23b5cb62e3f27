"""The public surface is small, sorted and importable (STYLE.md habit 11)."""

from __future__ import annotations

import dvmkit


def test_public_names_are_sorted_and_all_importable() -> None:
    assert dvmkit.__all__ == sorted(dvmkit.__all__)
    assert len(dvmkit.__all__) <= 30
    for name in dvmkit.__all__:
        assert getattr(dvmkit, name) is not None
