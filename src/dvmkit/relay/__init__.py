"""Relays: the client pool dvmkit talks through, and dvmkit's own relay (``dvm relay``).

Import what you need from the submodules (``dvmkit.relay.server.Relay``, ...); this package
imports nothing itself, so that using the pool does not load the relay and vice versa.
"""
