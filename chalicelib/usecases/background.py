"""One small thread pool per process for work that waits on another process
(the schematron worker, the object store) while this one goes on.

Created on first use and dropped in a forked child (a child inherits the
pool object but none of its threads, so submitting there would wait forever).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

WORKERS = 32  # tasks never wait on one another: a full pool only queues, never deadlocks

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="background")
        return _pool


def _forget_in_child() -> None:
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
