"""Progress and warnings on stderr, shared by every command: a bar on a terminal, plain lines in a log.

On a terminal (stderr is a TTY) :class:`Progress` redraws one line with ``\\r``. Anywhere else (a log file,
a pipe, a CI job) it never writes ``\\r`` or escape sequences: it writes a plain line at most every
``every`` seconds and one at the end, so a log shows that work goes on without filling up. Warnings
(:meth:`Progress.warn`) always start on a fresh line, never glued to a bar, and the bar is redrawn after them.

:class:`Batch` runs a command over many items: an item that raises :class:`~featuremaps.errors.UserError` is
named in a warning and skipped, the rest go on, and :meth:`Batch.finish` prints the summary and returns the
exit status (0 all done, 1 some skipped, 2 none could be used).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable

from featuremaps.errors import UserError

#: Exit statuses of every command (README "Exit codes").
EXIT_OK, EXIT_SKIPPED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def clean(text: object) -> str:
    """One printable line: newlines and control characters (terminal escapes in file names) made visible."""
    s = str(text)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in s)


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 5 s``, ``2 h 10 min``: a time a person reads at a glance."""
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


class Progress:
    """Progress of ``n`` items on stderr: ``progress(i, n, item)`` before item ``i``, ``progress(n, n)`` at the end.

    Example::

        progress = Progress("show ")
        for i, p in enumerate(paths):
            progress(i, len(paths), p)
            ...
        progress(len(paths), len(paths))
    """

    def __init__(self, label: str = "", stream=None, every: float = 10.0, tty: bool | None = None):
        self.label, self.t0 = label, time.monotonic()
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty, self.every = tty, every
        self._drawn = False  # a bar is on the current line (TTY only)
        self._last_plain = time.monotonic()
        self._state: tuple[int, int, object] | None = None
        self.skipped = 0  # items a Batch skipped: the end line says "1/3 done, 2 skipped", not "3/3 done"

    def __call__(self, i: int, n: int, item=None) -> None:
        if i == 0 and n >= 2 and (self._state is None or self._state[0] != 0):  # the work starts: rates from now
            self.t0 = self._last_plain = time.monotonic()
        self._state = (i, n, item)
        if n < 2:
            return
        if self.tty:
            self._draw(i, n, item)
            if i >= n:
                self.stream.write("\n")
                self._drawn = False
            self.stream.flush()
            return
        now = time.monotonic()
        if i >= n:
            self.stream.write(f"{self.label.strip()}: {self._done(n)} in {duration(now - self.t0)}\n")
        elif i > 0 and now - self._last_plain >= self.every:
            name = self._name(item)
            self.stream.write(f"{self.label.strip()}: {i}/{n}{f' ({name})' if name else ''}, {self._eta(i, n)}\n")
            self._last_plain = now
        else:
            return
        self.stream.flush()

    def _done(self, n: int) -> str:
        """``3/3 done``, or ``1/3 done, 2 skipped``: the end line counts only what was done."""
        k = min(self.skipped, n)
        return f"{n - k}/{n} done, {k} skipped" if k else f"{n}/{n} done"

    def _eta(self, i: int, n: int) -> str:
        """``ETA 1 min 5 s`` from the rate so far (``ETA ?`` before the first item is done)."""
        if i <= 0:
            return "ETA ?"
        return f"ETA {duration((time.monotonic() - self.t0) * (n - i) / i)}"

    @staticmethod
    def _name(item) -> str:
        if item is None:
            return ""
        return clean(getattr(item, "name", item))

    def _draw(self, i, n, item) -> None:
        width = 28
        done = int(width * min(i, n) / n)
        rate = i / max(1e-9, time.monotonic() - self.t0)
        name = self._name(item)
        eta = self._eta(i, n) if i < n else self._done(n)
        self.stream.write(
            f"\r{self.label}[{'#' * done}{'.' * (width - done)}] {i}/{n} {rate:.1f}/s {eta:<16} {name[:40]:<41}"
        )
        self._drawn = True

    def warn(self, message: str, prefix: str = "featuremaps: warning: ") -> None:
        """``message`` on a line of its own (the bar, if any, is redrawn under it)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")  # clear the bar's line (TTY only)
        self.stream.write(f"{prefix}{clean(message)}\n")
        if self.tty and self._state is not None and self._state[1] >= 2 and self._state[0] < self._state[1]:
            self._draw(*self._state)
        self.stream.flush()

    def status(self, message: str) -> None:
        """What is going on now ("reading FER2013 ..."), on a terminal only: logs stay free of chatter."""
        if self.tty:
            self.warn(message, prefix=self.label)

    def note(self, message: str) -> None:
        """An informational line (``featuremaps: note: ...``), same placement rules as :meth:`warn`."""
        self.warn(message, prefix="featuremaps: note: ")


def kept_note(folder, kept: list[str]) -> str:
    """The note for a result folder whose replaced version held the user's entries, kept in the new one."""
    shown = ", ".join(clean(k) for k in kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
    return (
        f"kept {shown} in {clean(folder)}: featuremaps did not write them, and a re-run replaces only the files "
        "it wrote"
    )


class Batch:
    """Run ``func(item)`` for each item: a UserError skips the item with a warning, the rest go on.

    ``what`` names the items in messages ("image"). A batch of one item that fails re-raises its error, so
    a single bad input still ends in one ``featuremaps: error:`` line and exit status 2.
    """

    def __init__(self, label: str, what: str = "image", progress: Progress | None = None):
        self.progress = progress or Progress(label)
        self.what = what
        self.done: list = []
        self.skipped: list[tuple[object, str]] = []
        self.total = 0

    def run(self, items: Iterable, func: Callable, name: Callable = lambda x: x) -> list:
        items = list(items)
        self.total = len(items)
        results = []
        for i, item in enumerate(items):
            self.progress(i, len(items), name(item))
            try:
                results.append(func(item))
                self.done.append(item)
            except UserError as e:
                if len(items) == 1:
                    raise
                self.skip(name(item), str(e))
        self.progress(len(items), len(items), None)
        return results

    def skip(self, item, reason: str) -> None:
        """One wording for every skipped item: ``featuremaps: warning: skipped ITEM: REASON``."""
        self.skipped.append((item, reason))
        self.progress.skipped += 1
        self.progress.warn(f"skipped {item}: {reason}")

    def finish(self) -> int:
        """Print the summary line (only when something was skipped) and return the exit status."""
        if not self.skipped:
            return EXIT_OK
        n, k = self.total, len(self.skipped)
        plural = "s" if n != 1 else ""
        if k >= n:
            self.progress.warn(
                f"none of the {n} {self.what}{plural} could be used (reasons above)", "featuremaps: error: "
            )
            return EXIT_ERROR
        rest = "the other one is done" if n - k == 1 else f"the other {n - k} are done"
        self.progress.warn(f"skipped {k} of {n} {self.what}{plural}; {rest}", "featuremaps: ")
        return EXIT_SKIPPED
