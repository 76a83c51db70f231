"""Cuts streamed text at the first stop string, holding back tails that may start one."""
from collections.abc import Iterable


class StopStringMatcher:
    def __init__(self, stop_strings: Iterable[str]):
        self._stops = tuple(s for s in stop_strings if s)
        self._held = ""
        self.stopped = False
        self.matched: str | None = None

    def feed(self, text_delta: str) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was found); after a stop, feeds emit nothing."""
        if self.stopped:
            return "", True
        text = self._held + text_delta
        match_at, stop = self._first_match(text)
        if stop is not None:
            self.stopped, self.matched, self._held = True, stop, ""
            return text[:match_at], True
        keep = self._partial_match_len(text)
        self._held = text[len(text) - keep:]
        return text[:len(text) - keep], False

    def flush(self) -> str:
        """Release held-back text at the end of generation (no stop string completed)."""
        held, self._held = self._held, ""
        return held

    def _first_match(self, text: str) -> tuple[int, str | None]:
        best, best_stop = len(text), None
        for stop in self._stops:
            at = text.find(stop)
            if at != -1 and at < best:
                best, best_stop = at, stop
        return best, best_stop

    def _partial_match_len(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
