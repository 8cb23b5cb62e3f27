"""The Nostr protocol core: pure values and functions, no I/O.

Nothing in this package imports asyncio, websockets or sqlite (a test proves it); clock and
randomness are arguments with real defaults, so official vectors reproduce exactly.
"""
