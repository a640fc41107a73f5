"""The participant side of a cross-region trek: each leg's fence and hold, and resolving legs left in doubt."""

__all__ = ["participant", "resolver"]
