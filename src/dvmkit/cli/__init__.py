"""The ``dvm`` command line: nak's habits (JSON lines on stdout, messages on stderr)."""
