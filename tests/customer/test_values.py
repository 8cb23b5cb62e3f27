"""Update.describe: the one-line progress `dvm ask` prints, safe for any text a DVM sends."""

from __future__ import annotations

import pytest

from dvmkit.customer import Update, UpdateType

DVM = "ab" * 32
REQUEST = "cd" * 32


@pytest.mark.parametrize(
    ("update", "line"),
    [
        (Update(UpdateType.SENT, REQUEST), "sent request cdcdcdcdcdcd… (open)"),
        (Update(UpdateType.SENT, REQUEST, dvm=DVM), "sent request cdcdcdcdcdcd… to abababababab…"),
        (
            Update(UpdateType.REPUBLISHED, REQUEST),
            "republished request cdcdcdcdcdcd…: no answer yet",
        ),
        (
            Update(UpdateType.OFFER, REQUEST, dvm=DVM, amount_msat=5),
            "offer from abababababab…: 5 msat",
        ),
        (Update(UpdateType.OFFER, REQUEST, dvm=DVM), "offer from abababababab…: no price"),
        (
            Update(UpdateType.CHOSEN, REQUEST, dvm=DVM, amount_msat=0, content="cheapest"),
            "chose abababababab… 0 msat (cheapest)",
        ),
        (
            Update(UpdateType.PAYMENT_REQUIRED, REQUEST, dvm=DVM, amount_msat=2000),
            "payment required by abababababab…: 2000 msat",
        ),
        (Update(UpdateType.PROCESSING, REQUEST, dvm=DVM), "processing by abababababab…"),
        (
            Update(UpdateType.PROCESSING, REQUEST, dvm=DVM, content="step 1"),
            "processing by abababababab…: step 1",
        ),
        (
            Update(UpdateType.PARTIAL, REQUEST, dvm=DVM, content="half"),
            "partial result from abababababab…: half",
        ),
        (
            Update(UpdateType.FAILOVER, REQUEST, dvm=DVM),
            "failing over to abababababab…: the DVM before it stayed silent",
        ),
        (Update(UpdateType.SUCCESS, REQUEST, dvm=DVM), "result from abababababab…"),
        (
            Update(UpdateType.ERROR, REQUEST, dvm=DVM, code="BAD", content="no"),
            "error from abababababab…: BAD no",
        ),
        (Update(UpdateType.CANCELLED, REQUEST, dvm=DVM), "cancelled by abababababab…"),
        (Update(UpdateType.TIMEOUT, REQUEST, content="silence"), "timeout: silence"),
    ],
)
def test_every_update_reads_as_one_line(update: Update, line: str) -> None:
    assert update.describe() == line


def test_every_update_type_has_a_description() -> None:
    for kind in UpdateType:
        assert Update(kind, REQUEST, dvm=DVM).describe()


@pytest.mark.parametrize(
    "hostile",
    [
        "\x1b[2J\x1b]0;pwned\x07clear",
        "line one\nline two\r\n\tthree",
        "\x00\x08\x7f\u202e\u2028",
        "x" * 100_000,
    ],
)
def test_text_from_a_dvm_is_one_printable_bounded_line(hostile: str) -> None:
    line = Update(UpdateType.PARTIAL, REQUEST, dvm=DVM, content=hostile).describe()
    assert line.isprintable()
    assert len(line) <= 250
    assert "\x1b" not in line
