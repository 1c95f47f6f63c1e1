"""The keys that sign the audit log's head, its purge checkpoint and its exports (promise 5).

The signature is Ed25519 (through ``cryptography``), so that someone who holds only the public
key, an auditor or a trustee, can check an export without the service's secrets. The private
key is ``CALLFLOW_AUDIT_SIGNING_KEY``: a PEM (PKCS#8) private key, given as the PEM text itself
or as the path of a file that holds it. In local mode (no shared Redis) a key file is kept
beside the embedded store instead (:mod:`callflow.platform.local_keys`).

A record is signed over ``callflow-audit-<purpose>`` and its canonical JSON, so a head's
signature is no checkpoint's. Logs written before Ed25519 carry an HMAC-SHA256 ``mac`` under
``SECRET_KEY``; those are still accepted, when ``SECRET_KEY`` is given, until the next write
replaces them with an Ed25519 signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError
from callflow.platform.local_keys import local_signing_key

SIGNATURE = "sig"
LEGACY_MAC = "mac"
PEM_START = "-----BEGIN"


def canonical(value: Any) -> str:
    """The one encoding hashes and signatures are computed over; any change to it breaks them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _message(purpose: str, record: dict[str, Any]) -> bytes:
    return f"callflow-audit-{purpose}\n{canonical(record)}".encode()


def _pem_text(value: str, what: str) -> bytes:
    """The PEM itself, or the contents of the file ``value`` names."""
    if value.lstrip().startswith(PEM_START):
        return value.strip().encode("ascii") + b"\n"
    path = Path(value).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} names the file {str(path)!r}, which cannot be read "
                          f"({exc.strerror or exc}); give a PEM file or the PEM text") from None


def load_private_key(value: str, what: str = "CALLFLOW_AUDIT_SIGNING_KEY") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_pem_text(value, what), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} is not an unencrypted PEM private key ({exc}); make one "
                          "with `openssl genpkey -algorithm ed25519`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 "
                          "key; make one with `openssl genpkey -algorithm ed25519`")
    return key


def load_public_key(value: str, what: str = "the public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_pem_text(value, what))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} is not a PEM public key ({exc}); get it with `callflow "
                          "audit public-key`") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what} is not an Ed25519 public key; get it with `callflow audit "
                          "public-key`")
    return key


@dataclass(frozen=True)
class AuditKeys:
    """The public key that checks signatures, and the private key that makes them (absent
    for someone who only verifies); ``legacy_secret`` checks heads signed before Ed25519."""

    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None = None
    legacy_secret: str = ""

    @classmethod
    def signing(cls, private: Ed25519PrivateKey, legacy_secret: str = "") -> AuditKeys:
        return cls(private.public_key(), private, legacy_secret)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditKeys:
        """The configured key, or in local mode the key file beside the embedded store."""
        value = settings.audit_signing_key
        if not value and not settings.shared_store:
            value = local_signing_key(settings)
        if not value:
            raise ConfigError("CALLFLOW_AUDIT_SIGNING_KEY is not set: the audit log signs its "
                              "head with it (make one with `openssl genpkey -algorithm "
                              "ed25519 -out audit-signing-key.pem`, and see docs/"
                              "configuration.md)")
        return cls.signing(load_private_key(value), settings.secret_key)

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def fingerprint(self) -> str:
        """A short name for the key (SHA-256 of its raw bytes), to compare it by eye."""
        raw = self.public.public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, purpose: str, record: dict[str, Any]) -> str:
        """``record`` with its signature, as the canonical JSON that is stored."""
        if self.private is None:
            raise ConfigError("only the public key is configured: it can check the audit "
                              "log, not write to it")
        signature = self.private.sign(_message(purpose, record)).hex()
        return canonical({**record, SIGNATURE: signature})

    def open(self, purpose: str, raw: str | dict, names: tuple[str, ...],
             legacy_names: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """The record without its signature if it is well formed and rightly signed, else None.

        A record with a legacy ``mac`` over ``legacy_names`` is accepted only with the secret.
        """
        try:
            record = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError):
            return None
        if not isinstance(record, dict):
            return None
        if set(record) == {*names, SIGNATURE}:
            signature = record.pop(SIGNATURE)
            try:
                self.public.verify(bytes.fromhex(signature), _message(purpose, record))
            except (InvalidSignature, ValueError, TypeError):
                return None
        elif (legacy_names and self.legacy_secret
              and set(record) == {*legacy_names, LEGACY_MAC}):
            mac = record.pop(LEGACY_MAC)
            wanted = hmac.new(self.legacy_secret.encode("utf-8"), _message(purpose, record),
                              hashlib.sha256).hexdigest()
            if not isinstance(mac, str) or not hmac.compare_digest(mac, wanted):
                return None
        else:
            return None
        if not isinstance(record.get("seq"), int) or isinstance(record["seq"], bool):
            return None
        if not isinstance(record.get("hash"), str):
            return None
        return record
