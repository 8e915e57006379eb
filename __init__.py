"""storesense: edge in-store vision and sensor fusion.

The repository root is this package. Each top-level folder is one component,
installed under this namespace: ``edge/`` is ``storesense.edge``, ``datasets/`` is
``storesense.datasets``, and so on. Shared contracts live in three modules here:
:mod:`storesense.contracts` (messages and topics), :mod:`storesense.config`
(the store configuration) and :mod:`storesense.transport` (ZeroMQ and MQTT).
"""

__version__ = "0.1.0"
