"""Booking workflows after the hold, as Prefect flows over micro-batches (settlement,
expiry sweeps, reconciliation). Not built yet: until then the node's own sweeper
(:mod:`ridgeline.regional.sweeper`) expires lapsed holds."""
