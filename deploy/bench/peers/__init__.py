"""``ridgeline bench peers``: the booking workflow on Restate and DBOS Transact beside Ridgeline (issue 15).

Installed by the ``bench`` extra and ``make bench-peers`` (requirements.py says what is
missing); never imported by the plain install.
"""
