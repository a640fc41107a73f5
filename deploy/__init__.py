"""The composition root: node processes, the local quick start, the operator CLI.

Nothing imports deploy; deploy wires the other rooms together.
"""
