"""Cross-region treks as two-phase commit with compensation. Not built yet."""
