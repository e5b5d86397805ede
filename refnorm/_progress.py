"""A tiny progress bar on stderr (no dependency).

Silent unless the stream is a terminal; disabled by ``enabled=False`` or by
the environment variable ``REFNORM_NO_PROGRESS`` (any non-empty value)::

    with Progress("generate") as bar:
        for i, item in enumerate(items):
            ...
            bar.update(i + 1, len(items))
"""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """A one-line ``label [#####.....] done/total`` bar, redrawn at most 10 times a second."""

    def __init__(self, label: str = "", total: int | None = None, *, enabled: bool | None = None,
                 stream=None, width: int = 30):
        self.label = label
        self.total = total
        self.done = 0
        self.width = width
        self.stream = sys.stderr if stream is None else stream
        if enabled is None or enabled:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty()) and not os.environ.get("REFNORM_NO_PROGRESS")
        self.enabled = bool(enabled)
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress ``done`` of ``total`` (the total may be given once, at construction)."""
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and not (self.total and done >= self.total):
            return
        self._last = now
        self._draw()

    def _draw(self) -> None:
        if self.total:
            frac = min(max(self.done / self.total, 0.0), 1.0)
            filled = int(round(frac * self.width))
            bar = "#" * filled + "." * (self.width - filled)
            text = f"\r{self.label} [{bar}] {self.done}/{self.total}"
        else:
            text = f"\r{self.label} {self.done}"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar (leave the line clean for the command's own output)."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, done: int, total: int | None = None) -> None:
        self.update(done, total)
