"""Delivers outbox messages to the guests' mail spool, at most one copy per message.

The spool is a directory a mailer drains (the local stand-in for an email or SMS
provider): one file per message, named by the message id. A message is written to a
temporary file and then hard-linked to its name; ``link(2)`` refuses a name that exists,
so delivering the same message twice (a re-run after a crash between delivery and
marking it delivered, or two nodes racing) leaves one copy. Readers never see a partial
message: the name appears only once the content is complete and synced.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from ridgeline.regional.settlement.rows import OutboxMessage
from ridgeline.trust.private_files import FILE_MODE, private_dir


class SpoolSink:
    def __init__(self, directory: Path) -> None:
        self.directory = private_dir(directory)  # guests' names and stays: 0700, each message 0600

    def deliver(self, message: OutboxMessage) -> bool:
        """Places the message in the spool; False when it was there already."""
        final = self.directory / f"{message.message_id.replace(':', '_')}.json"
        if final.exists():
            return False
        body = {"message_id": message.message_id, "kind": message.kind, "booking_id": message.booking_id, "payload": message.payload}
        partial = self.directory / f".{uuid.uuid4().hex}.partial"
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "w") as handle:
            json.dump(body, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(partial, final)
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True
