"""Workflow versions as data: which version each booking runs, which new bookings get, and its durable timers."""
