"""A per-thread on/off switch that layers read while they are traced."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class TraceSwitch(threading.local):
    """Off, except in the thread that is inside `TraceSwitch.turned_on`.

    A ``threading.local`` attribute and not a ``contextvars.ContextVar``: ``torch.compile``
    (Dynamo) reads an attribute into the graph it traces and recompiles when the value
    changes, where ``ContextVar.get`` breaks the graph (one break per layer call: 41 on a
    4-stage model).

    Attributes:
        on: whether the switch is on in this thread.
    """

    def __init__(self):
        self.on = False

    @contextlib.contextmanager
    def turned_on(self) -> Iterator[None]:
        """On within this block (in this thread), then back to what it was."""
        before, self.on = self.on, True
        try:
            yield
        finally:
            self.on = before
