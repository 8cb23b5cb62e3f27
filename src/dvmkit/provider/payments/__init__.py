"""How a DVM takes money (DESIGN.md §6): one processor per method, or several as one.

::

    DVM(..., price_msat=21_000, payments=Payments(
        NWCPayments(os.environ["DVM_NWC"]),                 # bolt11 into its NWC wallet
        CashuPayments(mint_url="https://mint.example"),     # ecash swapped at its mint
        ZapPayments(address="dvm@example.com"),             # zaps to its own LNURL server
    ))

Each confirms with the provider's own wallet, mint or LNURL server before a job runs.
"""

from dvmkit.provider.payments.cashu import CashuPayments
from dvmkit.provider.payments.nwc import NWCPayments
from dvmkit.provider.payments.several import Payments
from dvmkit.provider.payments.zaps import ZapPayments

__all__ = ["CashuPayments", "NWCPayments", "Payments", "ZapPayments"]
