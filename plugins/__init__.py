"""Agency plugins (联动单位插件) and their reference agency simulators.

``plugins.agency`` holds what the four agencies share: the simulator scaffolding (HTTP+JSON over
aiohttp, SQLite store, idempotency by request id, the control-measure ledger, the injectable clock,
sealed-approval checks) and the async network client every connector uses. ``plugins.bank``,
``plugins.land``, ``plugins.public_security`` and ``plugins.telecom`` add only their data model and
their own rules.
"""
