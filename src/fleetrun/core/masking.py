"""Masking secrets in a stream of output, across chunk boundaries.

A secret can arrive split over two reads of a pipe. The masker holds back the last
`longest - 1` bytes it has seen (they might be the start of a secret whose end has
not arrived) and emits everything before them with every secret replaced by `***`.
Any secret that starts before the held-back tail lies wholly in view, so none is
missed; `flush` masks and emits the tail when the stream ends.
"""

from __future__ import annotations

MASK = b"***"


class Masker:
    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.hold = max((len(s) for s in self.secrets), default=1) - 1
        self._buf = b""

    def feed(self, data: bytes) -> bytes:
        """Masked bytes that are safe to emit now."""
        if not self.secrets:
            return data
        buf = self._buf + data
        out, rest = self._mask(buf, len(buf) - self.hold)
        self._buf = rest
        return out

    def flush(self) -> bytes:
        out, _ = self._mask(self._buf, len(self._buf))
        self._buf = b""
        return out

    def _mask(self, buf: bytes, limit: int) -> tuple[bytes, bytes]:
        """Mask occurrences that start before `limit`; (emitted, kept back)."""
        out: list[bytes] = []
        i = 0
        while True:
            found = self._earliest(buf, i)
            if found is None or found[0] >= limit:
                break
            pos, secret = found
            out += [buf[i:pos], MASK]
            i = pos + len(secret)
        if i < limit:
            out.append(buf[i:limit])
            i = limit
        return b"".join(out), buf[i:]

    def _earliest(self, buf: bytes, start: int) -> tuple[int, bytes] | None:
        best: tuple[int, bytes] | None = None
        for secret in self.secrets:  # longest first: on a tie the longest wins
            pos = buf.find(secret, start)
            if pos != -1 and (best is None or pos < best[0]):
                best = (pos, secret)
        return best
