"""One invocation's posting pace under @connections throttling (pure; the caller passes time).

A 429 from @connections means the account's token bucket (10,000/s) is empty
for now, not that this post will never go through. Retrying each post on its
own timer (jittered backoff) makes every one of 32 threads probe the bucket
independently, and a post gives up after a few tries while the invocation still
has seconds left. Instead every post of the invocation takes its start time
from one ``Pacer``, an AIMD rate limiter:

* unpaced until the first 429 (an unthrottled broadcast pays nothing);
* the first 429 sets the pace to half the rate at which posts were recently
  accepted; each further 429 halves it again, but only once per round: a 429
  from an attempt that started before the last cut says nothing new, since the
  slower pace had not yet been tried;
* each delivered post adds ``RECOVERY_RPS_PER_S / rate`` posts per second
  (about ``RECOVERY_RPS_PER_S`` more each second), so the pace climbs back
  towards what the bucket refills and is cut again when it overshoots.

The pacer also keeps the slowest answer it has seen, so a caller can refuse to
start an attempt whose timeout is too short to hear the answer (an attempt
that times out may well have been delivered: see ``callbacks.post_with_retry``).
"""

from __future__ import annotations

import threading
from collections import deque

DECREASE = 0.5
"""Multiplicative cut per round of 429s."""
RECOVERY_RPS_PER_S = 50.0
"""Additive increase: about this many posts per second more, each second without a 429."""
FLOOR_RPS = 10.0
"""The slowest pace: a bucket that refills at all is probed at least this often."""
WINDOW_S = 1.0
"""How far back the accepted rate is measured when the first 429 arrives."""
MAX_WINDOW_ENTRIES = 10_000
"""A bound on the window's memory (10,000/s is the account's whole quota)."""


class Pacer:
    """Start times for the posts of one invocation, shared by its threads."""

    def __init__(self, now: float) -> None:
        self._lock = threading.Lock()
        self._rate: float | None = None
        """Posts per second; None: unpaced (no 429 yet)."""
        self._next = now
        self._cut_at = float("-inf")
        self._accepted: deque[float] = deque(maxlen=MAX_WINDOW_ENTRIES)
        self._first = now
        self._slowest_s = 0.0
        self.throttles = 0
        """429 answers seen, every attempt counted."""

    @property
    def rate(self) -> float | None:
        return self._rate

    @property
    def slowest_s(self) -> float:
        """The longest an answered attempt took (0 before any answer)."""
        return self._slowest_s

    def reserve(self, now: float, latest: float) -> float | None:
        """The time to start the next attempt, reserved; None if that is after ``latest``."""
        with self._lock:
            if self._rate is None:
                return now
            start = max(self._next, now)
            if start > latest:
                return None
            self._next = start + 1.0 / self._rate
            return start

    def answered(self, started: float, now: float) -> None:
        """An attempt got an answer (any status): its latency counts towards ``slowest_s``."""
        with self._lock:
            self._slowest_s = max(self._slowest_s, now - started)

    def delivered(self, started: float, now: float) -> None:
        self.answered(started, now)
        with self._lock:
            self._accepted.append(now)
            if self._rate is not None:
                self._rate += RECOVERY_RPS_PER_S / self._rate

    def throttled(self, started: float, now: float) -> None:
        """A 429 for an attempt started at ``started``."""
        self.answered(started, now)
        with self._lock:
            self.throttles += 1
            if started < self._cut_at:
                return  # sent at the old pace: the new one has not been tried yet
            if self._rate is None:
                self._rate = self._accepted_rate(now)
            self._rate = max(FLOOR_RPS, self._rate * DECREASE)
            self._cut_at = now
            self._next = max(self._next, now + 1.0 / self._rate)  # a pause before the next probe

    def _accepted_rate(self, now: float) -> float:
        while self._accepted and self._accepted[0] < now - WINDOW_S:
            self._accepted.popleft()
        span = max(min(WINDOW_S, now - self._first), 1e-3)
        return max(FLOOR_RPS, len(self._accepted) / span)
