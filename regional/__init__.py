"""The regional orchestrator: books a region's basecamps against the region's own database.

Public surface for the other rooms: :mod:`.node` (run a node), :mod:`.db` (engines and
the whole-transaction retry helper), :mod:`.migrate` (schema versions), :mod:`.catalog`
(load the basecamp catalog) and the domain operations in :mod:`.holds`,
:mod:`.transitions`, :mod:`.expiry` and :mod:`.queries`.
"""
