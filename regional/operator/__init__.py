"""What operators do to stuck work: keyed, recorded actions through the cluster's own guarded steps, and the reads a console needs.

:mod:`.actions` runs retry / release / refund for one booking or a filtered set,
:mod:`.records` keeps each action's durable record (``operator_actions``, migration r0008),
:mod:`.in_flight` pages stuck work by keyset, :mod:`.timeline` assembles one booking's story.
"""

__all__ = ["actions", "effects", "in_flight", "model", "records", "timeline"]
