"""Payments: BOLT-11 invoices, the NIP-47 wallet client, the dvmkit dev wallet, Cashu ecash.

Above :mod:`dvmkit.relay` and :mod:`dvmkit.nostr`, below the provider, customer and CLI:

- :mod:`~dvmkit.payments.bolt11`: encode and decode Lightning invoices (pure);
- :mod:`~dvmkit.payments.nip47`: NIP-47 values, connection URIs and the request/response codec
  (pure);
- :mod:`~dvmkit.payments.nwc`: :class:`~dvmkit.payments.nwc.NWCClient`, a wallet over relays;
- :mod:`~dvmkit.payments.ledger` and :mod:`~dvmkit.payments.devwallet`: the dev wallet, a real
  NIP-47 wallet service with a SQLite ledger and instant settlement between its accounts;
- :mod:`~dvmkit.payments.zaps`: NIP-57 zap requests and receipts, and the checks on both (pure);
- :mod:`~dvmkit.payments.lnurl`: LNURL-pay (LUD-06/16) client functions, and
  :mod:`~dvmkit.payments.lnurl_server`: :class:`~dvmkit.payments.lnurl_server.LnurlServer`,
  which takes zaps into a NIP-47 wallet and publishes their receipts;
- :mod:`~dvmkit.payments.cashu`: :class:`~dvmkit.payments.cashu.CashuWallet`, ecash from one
  mint (receive = swap at the mint, the proof of payment), over ``cashu_crypto`` (BDHKE,
  keyset ids, DLEQ), ``cashu_token`` (V3/V4 tokens), ``cashu_cbor`` and ``cashu_mint`` (the
  mint's HTTP API).
"""
