"""Progress of a run on the terminal, or as plain lines where output is not one.

On a terminal, a tqdm bar redrawn in place. Elsewhere (``nohup``, CI logs, a pipe) the
carriage returns tqdm redraws with would fill a log with one unreadable line, so the
progress is a plain line every few percent instead::

    GRID: 35% (7000/20000 samples, 3/8 cells) 12 s elapsed

``run`` and ``tune`` both take their bar from :func:`progress_bar`.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Protocol, TextIO

from tqdm import tqdm

STEP_PERCENT = 5  # a plain line each time the run passes another 5% of its samples


class ProgressBar(Protocol):
    """What a run does with its progress: count samples, say more, close."""

    def update(self, n: int = 1) -> object:
        """Count ``n`` more samples done."""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Show ``s`` after the counts (finished cells, pruned trials)."""

    def close(self) -> None:
        """The run ended (finished or not)."""


class LineProgress:
    """A plain line on ``stream`` each time the count passes another ``step_percent`` of
    ``total``, and one when closed if the count moved since the last line (or the postfix
    did, after a first line: a run that did nothing prints nothing).

    ``clock`` gives seconds (``time.monotonic``; another for examples and tests).

    >>> ticks = iter([0.0, 4.0, 9.0, 12.0])
    >>> bar = LineProgress(20000, "GRID", stream=sys.stdout, clock=lambda: next(ticks))
    >>> bar.update(600)          # 3%: no line yet
    >>> bar.set_postfix_str("3/8 cells")
    >>> bar.update(6400)         # 35%
    GRID: 35% (7000/20000 samples, 3/8 cells) 4 s elapsed
    >>> bar.update(100)          # still in the 35-40% step
    >>> bar.close()
    GRID: 35% (7100/20000 samples, 3/8 cells) 9 s elapsed
    """

    def __init__(self, total: int, desc: str, *, unit: str = "sample",
                 step_percent: int = STEP_PERCENT, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.step = step_percent
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.start = clock()
        self.n = 0
        self.postfix = ""
        self.printed_step = 0  # the last step a line was printed for
        self.printed: tuple[int, str] | None = None  # count and postfix of the last line

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; print a line if that passed into a new step."""
        self.n += n
        step = self._percent() // self.step
        if step > self.printed_step:
            self._print()
            self.printed_step = step

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Show ``s`` after the counts on the next line (``refresh`` is tqdm's; a plain
        line is never redrawn)."""
        self.postfix = s

    def close(self) -> None:
        """The last line, unless nothing moved since the one before."""
        if (self.n, self.postfix) != (self.printed or (0, self.postfix)):
            self._print()

    def _percent(self) -> int:
        return 100 * self.n // self.total if self.total > 0 else 100

    def _print(self) -> None:
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self._percent()}% ({self.n}/{self.total} {self.unit}s{extra}) "
              f"{self.clock() - self.start:.0f} s elapsed", file=self.stream, flush=True)
        self.printed = (self.n, self.postfix)


def progress_bar(total: int, desc: str, *, enabled: bool = True,
                 stream: TextIO | None = None) -> ProgressBar:
    """A tqdm bar when ``stream`` (standard error by default) is a terminal, else a
    :class:`LineProgress`; nothing at all when not ``enabled`` (``--quiet``).

    >>> import io
    >>> bar = progress_bar(10, "doc", stream=io.StringIO())
    >>> type(bar).__name__
    'LineProgress'
    """
    stream = sys.stderr if stream is None else stream
    if enabled and not stream.isatty():
        return LineProgress(total, desc, stream=stream)
    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled, smoothing=0.05,
                file=stream)
