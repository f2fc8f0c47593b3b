"""The benchmarks' own embedded stack: PostgreSQL 15 and moto on free ports
in a temporary folder, removed with everything in it when the run ends."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import LocalStack, Secrets, free_port


@contextmanager
def local_stack(*, durable: bool) -> Iterator[tuple[LocalStack, Path]]:
    """A started stack and its temporary folder (for files a benchmark writes)."""
    base = Path(tempfile.mkdtemp(prefix="einvoice-bench-"))
    stack = LocalStack(base, free_port(), free_port(), Secrets(), durable=durable)
    stack.start()
    try:
        yield stack, base
    finally:
        stack.stop()
        shutil.rmtree(stack.postgres.base_dir, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
