"""Cross-region treks: two-phase commit with presumed abort, payment as a saga step.

:class:`.protocol.Coordinator` runs the protocol and its recovery over the decision log
(:mod:`.decision_log`, in the coordinator's own database, schema in :mod:`.schema`,
written in groups by :class:`.group_commit.GroupCommit`); :class:`.servicer.TrekServicer`
is TrekService at the gRPC edge and :class:`.server.CoordinatorServer` serves it. The
seams deploy/ fills in: :class:`.participants.Participants` (how to reach a leg's
region; :class:`.participants.RoutedParticipants` through the routing client),
:class:`.payments.Payments` (the payment adapter) and :data:`.decision_log.Transact`
(the database retry helper). Two or more coordinators share one log: one leads by the
lease in :mod:`.leadership`, every log write is fenced by its epoch, followers send
callers to it. Tests crash it at named points (:mod:`.crash_points`).
Imports stay within ``routing``, ``proto`` and the root package.
"""

from ridgeline.global_coordinator import decision_log, leadership, schema
from ridgeline.global_coordinator.decision_log import Transact
from ridgeline.global_coordinator.errors import NotLeader, ParticipantsUnreachable, StoreUnavailable, TrekError
from ridgeline.global_coordinator.group_commit import GroupCommit
from ridgeline.global_coordinator.participants import Participants, RoutedParticipants
from ridgeline.global_coordinator.payments import LedgerCharge, PaymentRefused, Payments, PaymentUnknown
from ridgeline.global_coordinator.protocol import Coordinator, CoordinatorConfig
from ridgeline.global_coordinator.server import CoordinatorServer
from ridgeline.global_coordinator.servicer import TrekServicer

__all__ = [
    "Coordinator",
    "CoordinatorConfig",
    "CoordinatorServer",
    "GroupCommit",
    "LedgerCharge",
    "NotLeader",
    "Participants",
    "ParticipantsUnreachable",
    "PaymentRefused",
    "PaymentUnknown",
    "Payments",
    "RoutedParticipants",
    "StoreUnavailable",
    "Transact",
    "TrekError",
    "TrekServicer",
    "decision_log",
    "leadership",
    "schema",
]
