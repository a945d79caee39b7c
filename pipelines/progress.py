"""A progress line for long runs: shards done / total and documents per second, on stderr.

On a terminal it redraws one line; in logs (CI, a cluster job) it prints a line at most every 10 seconds.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "shards", counts: bool = True) -> None:
        """``unit`` names what ``total`` counts (shards, tasks); ``counts`` False: no documents figure (the items
        of a map that processes no documents, such as proxies)."""
        self.label = label
        self.unit = unit
        self.counts = counts
        self.total = total
        self.done = 0
        self.skipped = 0
        self.documents = 0
        self.enabled = enabled
        self.started = time.perf_counter()
        self._last_print = 0.0
        self._tty = sys.stderr.isatty()

    def skip(self, count: int) -> None:
        self.skipped += count
        self.done += count

    def advance(self, documents: int) -> None:
        self.done += 1
        self.documents += documents
        self._show()

    def _line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        resumed = f", {self.skipped} already done" if self.skipped else ""
        rate = f"{self.documents:,} docs | {self.documents / elapsed:,.0f} docs/s | " if self.counts else ""
        return f"{self.label}: {self.unit} {self.done}/{self.total}{resumed} | {rate}{elapsed:,.1f}s"

    def _show(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            sys.stderr.write("\r" + self._line() + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or now - self._last_print >= 10:
            sys.stderr.write(self._line() + "\n")
            self._last_print = now

    def close(self) -> None:
        self._show(final=True)
