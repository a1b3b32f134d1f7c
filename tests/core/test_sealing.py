from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fleetrun.core.sealing import SealError, is_sealed, public_key_b64, seal, unseal


def test_only_the_node_with_the_key_and_the_same_context_can_open_it():
    node, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    secret = "pa$$ word\n日本 ' \" `x`".encode()
    sealed = seal(public_key_b64(node), secret, context=b"n-1:password")
    assert is_sealed(sealed) and secret not in sealed.encode()
    assert unseal(node, sealed, context=b"n-1:password") == secret
    assert seal(public_key_b64(node), secret) != seal(
        public_key_b64(node), secret
    )  # fresh each time
    with pytest.raises(SealError, match="does not open"):
        unseal(other, sealed, context=b"n-1:password")
    with pytest.raises(SealError, match="does not open"):
        unseal(node, sealed, context=b"n-1:token")
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        unseal(node, tampered, context=b"n-1:password")


@pytest.mark.parametrize("bad", ["plain", "fs1.!!!", "fs1.AAAA"])
def test_malformed_sealed_values_are_refused(bad):
    with pytest.raises(SealError):
        unseal(X25519PrivateKey.generate(), bad)


def test_a_malformed_key_is_refused():
    with pytest.raises(SealError, match="X25519"):
        seal("not-a-key", b"x")
