"""court-hub: the software behind a court enforcement command center (执行指挥中心).

Every court runs one hub node; nodes federate along the court tree over gRPC and load agency
plugins (pluggy) for asset inquiry and control. ``hub.node`` is the composition root.
"""

__version__ = "0.1.0"
