"""``python -m ridgeline.deploy.cli``: how Ridgeline starts its own child processes."""

from ridgeline.deploy.cli import app

app()
