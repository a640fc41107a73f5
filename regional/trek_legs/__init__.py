"""The participant side of a cross-region trek: each leg's fence and hold, the coordinators it
answers to, its commits and cancels checked against their log, and resolving legs left in doubt."""

__all__ = ["checked_moves", "coordinators", "participant", "resolver"]
