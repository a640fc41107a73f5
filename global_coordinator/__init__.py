"""Cross-region treks: two-phase commit with presumed abort, payment as a saga step.

The coordinator's public surface: :class:`.protocol.Coordinator` (the protocol and its
recovery), :mod:`.servicer` (TrekService at the gRPC edge), and the seams deploy/ fills
in: :class:`.participants.Participants` (how to reach a leg's region),
:class:`.payments.Payments` (the payment adapter) and :data:`.decision_log.Transact`
(the database retry helper). Imports stay within ``routing`` and ``proto``.
"""
