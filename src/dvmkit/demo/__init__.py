"""``dvm demo`` (what ``make demo`` runs): a small DVM economy on this machine, every part real.

1. dvmkit's relay starts on 127.0.0.1:10547 when free (so plain ``dvm ask`` finds it), else on
   a random port (the demo says which), with events in memory;
2. it is seeded with a generated corpus (:func:`corpus`: notes, reactions and reposts from
   fixed keys; no downloads);
3. the built-in DVMs start (echo, pow, search, count, trending), plus two competing ``digest``
   providers, both free, that bid on open requests with different ETAs (``DVM(offers=True)``):
   Swift (1 s) and Steady (3 s); two priced ``paid-digest`` providers, Lightning Digest
   (``NWCPayments`` on a dev-wallet account) and Ecash Digest (``CashuPayments`` at the demo
   mint); and one DVM is "started dead": its announcement and a heartbeat 30 minutes old are
   published, and nothing runs;
4. a customer (:class:`dvmkit.customer.Customer`) narrates on stderr: discovery with live/dead
   badges; an open request whose offers are compared and a winner chosen; a legacy NIP-90
   search; a chained job (a digest of the legacy trending job's result, ``["i", id, "job"]``);
   a provider killed mid-job and the customer failing over; a paid job (21 sat by bolt11 from
   the customer's own account at the demo's dev wallet, a real NIP-47 service on the relay,
   with both balances before and after); a job paid in Cashu ecash minted at the demo's mint
   (nutshell's ``mint`` from ``.venv-mint``, started in a temporary directory; the step fails,
   naming what is missing, when there is none); the results.

Each step's outcome is one JSON line on stdout (``{"step", "ok", "result"|"error"}``). Then the
demo keeps serving and prints ``dvm ask`` commands to try, until Ctrl-C; with ``--once`` it
exits instead: 0 when every step succeeded, 1 naming the failed steps otherwise.

Modules: :mod:`~dvmkit.demo.corpus` (the generated events), :mod:`~dvmkit.demo.providers` (the
digest DVMs, the priced ones and the dead one), :mod:`~dvmkit.demo.mint` (the Cashu mint's
process), :mod:`~dvmkit.demo.steps` (the customer's narrated steps) and
:mod:`~dvmkit.demo.session` (starting everything, running the steps, ``main``).
"""

from __future__ import annotations

from dvmkit.demo.corpus import corpus, demo_keys
from dvmkit.demo.mint import DEFAULT_MINT_BIN, DemoMint
from dvmkit.demo.providers import CATEGORY, PAID_CATEGORY, PRICE_MSAT, text_stats
from dvmkit.demo.session import DEFAULT_PORT, main, open_relay, run
from dvmkit.demo.steps import (
    CASHU_TEXT,
    CUSTOMER_DEPOSIT_MSAT,
    CUSTOMER_SATS,
    FAILOVER_TEXT,
    PAID_TEXT,
    PRIVATE_TEXT,
    SEARCH_WORD,
    TEXT,
    TRENDING_COUNT,
)
from dvmkit.dvms import BUILTINS

__all__ = [
    "BUILTINS",
    "CASHU_TEXT",
    "CATEGORY",
    "CUSTOMER_DEPOSIT_MSAT",
    "CUSTOMER_SATS",
    "DEFAULT_MINT_BIN",
    "DEFAULT_PORT",
    "FAILOVER_TEXT",
    "PAID_CATEGORY",
    "PAID_TEXT",
    "PRICE_MSAT",
    "PRIVATE_TEXT",
    "SEARCH_WORD",
    "TEXT",
    "TRENDING_COUNT",
    "DemoMint",
    "corpus",
    "demo_keys",
    "main",
    "open_relay",
    "run",
    "text_stats",
]
