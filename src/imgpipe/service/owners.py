"""Who holds a claim: one name per process, shared by creator leases and notice claims.

>>> owner = local_owner()
>>> host, pid, token = owner.rsplit(":", 2)
>>> int(pid) > 0 and len(token) == 8
True
"""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["local_owner"]


def local_owner() -> str:
    """This process, as a claim's owner: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
