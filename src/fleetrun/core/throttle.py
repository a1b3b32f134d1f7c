"""Request-rate limits: a token bucket per key, over plain numbers.

A bucket holds up to `burst` tokens and gains `rate_per_s` a second; a request takes
one. When the bucket is empty the answer is how long to wait for the next token.
Buckets that have filled up again are forgotten once there are more than `max_keys`,
so a flood from many keys costs bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    rate_per_s: float
    burst: int
    max_keys: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, key: str, now: float) -> float | None:
        """None if `key` may go on (one token taken), else seconds until it may."""
        if not self.enabled:
            return None
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_keys:
                self.prune(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s

    def wait_s(self, key: str, now: float) -> float | None:
        """What `take` would answer, without taking anything."""
        if not self.enabled:
            return None
        tokens = self._tokens(key, now)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def prune(self, now: float) -> None:
        """Forget the buckets that are full again (they hold nothing worth keeping)."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - last) * self.rate_per_s)
