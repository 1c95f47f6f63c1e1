"""What verifying the audit log costs: the whole walk against the dashboard's quick check.

Starts a private redis-server, writes ``--entries`` audit entries the way the service does (each
append signed and witnessed), then times, in turns, ``AuditLog.verify()`` (every entry hashed,
the witness read: what ``callflow audit verify`` does, the baseline) and
``AuditLog.verify_recent()`` (from the newest witnessed head on: what the audit page does), with
a few entries written since the witness last saw the log. The figure is the ratio of the two,
measured in the same run.

    python bench/audit_verify.py [--entries 5000] [--since 5] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhook import start_redis  # noqa: E402  (bench/ is not a package)

from callflow.records.audit import AuditKind, AuditLog  # noqa: E402
from callflow.records.audit_keys import AuditKeys  # noqa: E402
from callflow.records.audit_witness import Witness  # noqa: E402


def timed(action) -> float:
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"verification failed: {result.reason}")
    return elapsed * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--since", type=int, default=5,
                        help="entries written since the newest witnessed head")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        service = start_redis(workdir, None)
        try:
            client = redis.Redis(port=service.port, decode_responses=True)
            keys = AuditKeys.signing(Ed25519PrivateKey.generate())
            audit = AuditLog(client, keys, witness=Witness(workdir / "audit-witness.jsonl"))
            for n in range(args.entries - args.since):
                audit.append(AuditKind.LOGIN, actor=f"manager{n % 7}", via="web")
            unwitnessed = AuditLog(client, keys)  # another machine's writes: not in this file
            for n in range(args.since):
                unwitnessed.append(AuditKind.LOGIN, actor=f"manager{n % 7}", via="web")

            whole, recent = [], []
            for _ in range(args.runs):  # in turns, so a busy moment touches both alike
                whole.append(timed(audit.verify))
                recent.append(timed(audit.verify_recent))
        finally:
            service.stop()

    full, quick = statistics.median(whole), statistics.median(recent)
    ratios = sorted(r / w for r, w in zip(recent, whole, strict=True))
    print(f"entries                         {args.entries} ({args.since} after the newest "
          "witnessed head)")
    print(f"verify (whole chain), median    {full:9.2f} ms   (baseline)")
    print(f"verify_recent (audit page)      {quick:9.2f} ms")
    print(f"ratio recent / whole            {statistics.median(ratios):9.4f}   "
          f"(range {ratios[0]:.4f} to {ratios[-1]:.4f} over {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
