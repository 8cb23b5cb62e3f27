"""What the provider benchmark measures, and the job requests it sends each subject.

A subject is one DVM (dvmkit's or nostrdvm's echo script) fed one form of request:

- ``legacy``: NIP-90 kind 5050 with ``["i", text, "text"]`` and no ``p`` tag, answered by a
  kind-6050 result (``e`` = request id) and kind-7000 feedback. The default run: dvmkit's
  DVM against nostrdvm.
- ``modern``: dvmkit's kind 25000 targeted to the DVM (``p``) in the ``echo`` category,
  answered by kind-25000 statuses, the result being ``success`` (DESIGN.md §4.2).
- ``wrapped``: the same signed kind-25000 request inside a simplified gift wrap (ContextVM
  CEP-4, kind 21059, ``p`` = DVM), answered by wraps to the customer (``--encrypted``
  compares it with ``modern`` in the clear).

Every request is signed, wrapped and framed before the clock starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from benchmarks.wsraw import event_frame
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.giftwrap import EPHEMERAL_GIFT_WRAP_KIND
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import Envelope, wrap_request
from dvmkit.protocol.job import FEEDBACK_KIND, MODERN_KIND

Form = Literal["legacy", "modern", "wrapped"]
LEGACY_KIND = 5050
CATEGORY = "echo"  # benchmarks/provider_dvms/dvmkit_echo.py serves it
#: What the customer subscribes to (``#p`` = its keys) for each form's answers.
ANSWER_KINDS: dict[Form, tuple[int, ...]] = {
    "legacy": (LEGACY_KIND + 1000, FEEDBACK_KIND),
    "modern": (MODERN_KIND,),
    "wrapped": (EPHEMERAL_GIFT_WRAP_KIND,),
}


@dataclass(frozen=True, slots=True)
class Subject:
    """One measured column: which DVM script runs, and which requests it gets."""

    name: str  # the key of its figures and of report.subjects
    dvm: str  # "ours" or "nostrdvm": the script in provider_dvms/
    form: Form
    label: str


SUBJECTS = {
    s.name: s
    for s in (
        Subject("ours", "ours", "legacy", "dvmkit DVM"),
        Subject("nostrdvm", "nostrdvm", "legacy", "nostrdvm 1.1.8"),
        Subject("plaintext", "ours", "modern", "dvmkit DVM, kind 25000 in the clear"),
        Subject("encrypted", "ours", "wrapped", "dvmkit DVM, kind 25000 in a 21059 wrap"),
    )
}
ENCRYPTED = (SUBJECTS["plaintext"], SUBJECTS["encrypted"])


def requests(
    form: Form, dvm: str, customers: Sequence[Keys], count: int, label: str
) -> list[tuple[str, str, bytes]]:
    """``count`` job requests as (id, input text, ready-to-write frame), round-robin from
    ``customers``, for the DVM whose hex pubkey is ``dvm``.

    The id is the signed request's, also when it travels wrapped: answers name it in ``e``.
    The inputs avoid the words nostrdvm's post-processing rewrites ("sets" -> "Sats", ...), so
    an echo must return its input unchanged.
    """
    out = []
    for i in range(count):
        text = f"echo {label} {i} {os.urandom(4).hex()}"
        keys = customers[i % len(customers)]
        if form == "legacy":
            event = sign_event(keys, kind=LEGACY_KIND, content="", tags=[["i", text, "text"]])
            out.append((event.id, text, event_frame(event)))
            continue
        tags = [["category", CATEGORY], ["t", CATEGORY], ["i", text, "text"], ["p", dvm]]
        event = sign_event(keys, kind=MODERN_KIND, content="", tags=tags)
        sent = event if form == "modern" else wrap_request(event, keys, dvm, Envelope())
        out.append((event.id, text, event_frame(sent)))
    return out
