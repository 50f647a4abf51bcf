"""Fault campaigns (``court-hub chaos``): a real-process tree under load and seeded faults, then an
invariant checker over every node's store and every simulator's ledger. See :mod:`hub.chaos.runner`."""
