"""The durable side of settlement: a booking's payment row, its guarded steps and the outbox.

One module, :mod:`.rows`, because the room has one job: the flows in ``ridgeline.flows``
drive the steps, the edge reads the rows into replies.
"""

__all__ = ["rows"]
