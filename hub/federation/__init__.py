"""The federation: sealed envelopes carried along the court tree over gRPC links.

* ``envelope`` — build, seal and validate envelopes; ``kinds`` — which kinds exist, where they may go.
* ``router`` — next hops for a destination (court, subtree, capability).
* ``exchange`` — the durable core: outbox on send, verify + dedupe + commit + ack on receive.
* ``link`` — one authenticated link session (batches, window, acks, announcements, heartbeats).
* ``server`` / ``client`` — the parent's Link service and the child's dialer.
* ``announce`` — routes, certificates and revocations exchanged on links.
"""
