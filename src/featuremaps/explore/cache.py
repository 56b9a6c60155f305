"""A least-recently-used store bounded by bytes: the explorer's per-image activations and uploads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class ByteLRU:
    """Keeps values while their summed ``nbytes`` fit ``max_bytes``; the least recently used go first.

    The newest value is always kept, even alone over the bound (one image's maps must be viewable), so the
    held total never exceeds ``max_bytes`` plus one value. Thread-safe.

    Example::

        cache = ByteLRU(512 * 2**20)
        cache.put("img1", analysis, analysis.nbytes)
        cache.get("img1")            # -> analysis, now the most recently used
    """

    def __init__(self, max_bytes: int, on_evict: Callable[[str, object], None] | None = None):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._on_evict = on_evict
        self.evictions = 0

    def get(self, key: str):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value, nbytes: int) -> None:
        evicted = []
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, int(nbytes))
            self._bytes += int(nbytes)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                k, (v, n) = self._items.popitem(last=False)
                self._bytes -= n
                self.evictions += 1
                evicted.append((k, v))
        if self._on_evict:
            for k, v in evicted:
                self._on_evict(k, v)

    def pop(self, key: str):
        """Forget ``key`` (no eviction callback: the caller asked); its value, or None."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._bytes -= item[1]
            return item[0]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
