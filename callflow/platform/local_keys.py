"""Keys kept beside the embedded store, so local mode (no shared Redis) works with one command.

Only in local mode: a deployment on a shared Redis configures its keys explicitly, and refuses
to start without them. Each file is created once, readable by its owner only, and reused on
every later run so that what was signed before still verifies.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callflow.platform.config import Settings

SIGNING_KEY_FILE = "audit-signing-key.pem"
WITNESS_FILE = "audit-witness.jsonl"


def data_dir(settings: Settings) -> Path:
    """The folder of the embedded store, where local mode keeps its files."""
    return Path(settings.embedded_db).parent


def local_signing_key(settings: Settings) -> str:
    """The path of the audit signing key beside the embedded store, made on first use."""
    path = data_dir(settings) / SIGNING_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        # Written whole under another name, then linked into place: a process starting at the
        # same moment sees either no key or a complete one, and the first one linked is kept.
        spare = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as handle:
            handle.write(pem)
        try:
            os.link(spare, path)
        except FileExistsError:
            pass
        finally:
            spare.unlink()
    return str(path)


def default_witness(settings: Settings) -> str:
    """Where the audit witness is kept unless ``CALLFLOW_AUDIT_WITNESS`` says otherwise."""
    return str(data_dir(settings) / WITNESS_FILE)
