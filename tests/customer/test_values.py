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
        (
            Update(
                UpdateType.PAYMENT_REQUIRED,
                REQUEST,
                dvm=DVM,
                amount_msat=2000,
                methods={"bolt11": None, "cashu": "https://mint.example"},
            ),
            "payment required by abababababab…: 2000 msat (bolt11, cashu)",
        ),
        (
            Update(UpdateType.PAID, REQUEST, dvm=DVM, amount_msat=2000, method="cashu"),
            "paid 2000 msat to abababababab… by cashu",
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
        (
            Update(UpdateType.ERROR, REQUEST, dvm=DVM, code="X", content="down", refund_msat=9),
            "error from abababababab…: X down (refunded 9 msat)",
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


def test_payment_fields_are_in_the_json_form_only_when_set() -> None:
    bare = Update(UpdateType.SENT, REQUEST, dvm=DVM).to_dict()
    assert not {"methods", "method", "refund_msat"} & bare.keys()
    asked = Update(
        UpdateType.PAYMENT_REQUIRED, REQUEST, dvm=DVM, amount_msat=5, methods={"zap": "a@b.c"}
    )
    assert asked.to_dict()["methods"] == {"zap": "a@b.c"}
    paid = Update(UpdateType.PAID, REQUEST, dvm=DVM, amount_msat=5, method="zap").to_dict()
    assert (paid["type"], paid["amount_msat"], paid["method"]) == ("paid", 5, "zap")
    refunded = Update(UpdateType.ERROR, REQUEST, dvm=DVM, refund_msat=5, method="cashu")
    assert refunded.to_dict()["refund_msat"] == 5


def test_method_names_from_a_dvm_are_printable_and_short() -> None:
    hostile = {"\x1b[31mred" + "x" * 100: None}
    line = Update(UpdateType.PAYMENT_REQUIRED, REQUEST, dvm=DVM, methods=hostile).describe()
    assert line.isprintable()
    assert "\x1b" not in line
    assert len(line) < 100
