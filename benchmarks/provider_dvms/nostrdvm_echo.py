"""nostrdvm 1.1.8's echo DVM for ``python -m benchmarks provider``: GenericDVM on kind 5050.

Runs in ``.venv-bench-nostrdvm`` (``benchmarks/provider_procs.py`` starts it in a scratch
working directory, where nostrdvm writes ``db/`` and ``outputs/``). The environment carries
BENCH_RELAY_URL and BENCH_DVM_SECRET only; what nostrdvm would otherwise do on its own
(bench/nostrdvm-baseline/RESULTS.md §3.2 found these by reading the package):

- ``build_default_config`` is not used: it reads and writes a ``.env`` inside site-packages and
  may call LNbits. A plain ``DVMConfig`` with the key set directly needs neither.
- Every relay list defaults to public relays; all of them point at the local relay. The
  announce list matters even without announcements (the start-up heartbeat broadcasts to it).
- No announcement is made (``AdminConfig()`` defaults), so none is deleted at shutdown.
- The job is free (no cost), unencrypted, and needs no payment or Lightning set-up.
- ``DVMFramework.run`` only stops on KeyboardInterrupt; the benchmark sends SIGTERM, whose
  default action ends the process.
"""

import os

from nostr_dvm.framework import DVMFramework  # type: ignore[import-not-found]
from nostr_dvm.tasks.generic_dvm import GenericDVM  # type: ignore[import-not-found]
from nostr_dvm.utils.admin_utils import AdminConfig  # type: ignore[import-not-found]
from nostr_dvm.utils.dvmconfig import DVMConfig  # type: ignore[import-not-found]
from nostr_dvm.utils.nip89_utils import NIP89Config  # type: ignore[import-not-found]
from nostr_sdk import Kind

relay = os.environ["BENCH_RELAY_URL"]

config = DVMConfig()
config.PRIVATE_KEY = os.environ["BENCH_DVM_SECRET"]
config.IDENTIFIER = "bench_echo"
config.KIND = Kind(5050)
config.FIX_COST = 0
config.PER_UNIT_COST = 0
config.LNBITS_INVOICE_KEY = ""
config.LNBITS_ADMIN_KEY = ""
config.LNBITS_URL = None
config.LN_ADDRESS = ""
config.RELAY_LIST = [relay]
config.ANNOUNCE_RELAY_LIST = [relay]
config.SYNC_DB_RELAY_LIST = [relay]
config.NUTZAP_RELAYS = [relay]
config.DELETE_ANNOUNCEMENT_ON_SHUTDOWN = False

dvm = GenericDVM(
    name="bench-echo", dvm_config=config, nip89config=NIP89Config(), admin_config=AdminConfig()
)


async def process(request_form: dict[str, object]) -> object:
    # GenericDVM's documented extension point: replace ``process``; echo the `i` text.
    return dvm.set_options(request_form)["input"]


dvm.process = process
framework = DVMFramework()
framework.add(dvm)
framework.run()
