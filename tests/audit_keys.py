"""The audit signing key every test uses: fixed, so a log one part of a test writes verifies in
another. Never a deployment's key: it is printed right here."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callflow.records.audit_keys import AuditKeys

PRIVATE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"callflow tests").digest())
SIGNING_PEM = PRIVATE.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode("ascii")
# The secret the tests' settings carry: it still checks heads signed the old way (HMAC).
LEGACY_SECRET = "test-secret"
KEYS = AuditKeys.signing(PRIVATE, LEGACY_SECRET)


def other_keys() -> AuditKeys:
    """Someone else's key: it cannot vouch for a log signed with ``KEYS``."""
    return AuditKeys.signing(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
