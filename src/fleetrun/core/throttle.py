"""Request-rate limits: a token bucket per key, over plain numbers.

A bucket holds up to `burst` tokens and gains `rate_per_s` a second; a request takes
one. When the bucket is empty the answer is how long to wait for the next token.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    rate_per_s: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, key: str, now: float) -> float | None:
        """None if `key` may go on (one token taken), else seconds until it may."""
        if not self.enabled:
            return None
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s
