"""The container's health check: healthy while the server's /readyz answers 200.

The server listens on FLEETRUN_PORT, with HTTPS (its own CA or an operator's
certificate) or plain HTTP; this asks over loopback in both, and checks no certificate:
it proves only that this container's server is ready, and sends nothing secret.
"""

import os
import ssl
import sys
import urllib.error
import urllib.request


def ready(scheme: str) -> bool:
    port = os.environ.get("FLEETRUN_PORT", "8470")
    context = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323
    url = f"{scheme}://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return False  # it answered, and not 200: not ready


def main() -> int:
    for scheme in ("https", "http"):
        try:
            return 0 if ready(scheme) else 1
        except (OSError, ssl.SSLError):
            continue  # not this scheme (or not listening yet)
    return 1


if __name__ == "__main__":
    sys.exit(main())
