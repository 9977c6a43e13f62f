"""Where a secret must not be: the metadata database, the trigger rows, files, S3 objects.

Each function returns where the secret was found (empty when it is nowhere), and how much it
looked at, so a test can also show that the search covered something.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.services import Postgres
from tests.e2e.servers import MotoS3


@dataclass
class Findings:
    """Where a search looked (``looked``: items read) and where it found the secret."""

    what: str
    looked: int = 0
    found: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = "nowhere" if not self.found else f"in {len(self.found)}: {self.found[:5]}"
        return f"{self.what}: {self.looked} searched, key found {where}"


def scan_database(pg: Postgres, secret: str) -> Findings:
    """Every row of every table of the metadata database (``pg_dump --data-only``)."""
    dump = pg.dump()
    findings = Findings("metadata DB rows (pg_dump)")
    table = "?"
    for line in dump.splitlines():
        if line.startswith("COPY "):
            table = line.split()[1]
            continue
        if line and not line.startswith(("--", "SET ", "SELECT ", "\\.")):
            findings.looked += 1
            if secret in line:
                findings.found.append(table)
    return findings


def table_rows(pg: Postgres, table: str) -> int:
    return int(pg.psql(f"SELECT count(*) FROM {table}").strip() or 0)


def trigger_kwargs(pg: Postgres, fernet_key: str) -> list[dict[str, Any]]:
    """The kwargs of every trigger row, decrypted where they are encrypted.

    Airflow encrypts them with the Fernet key when the scheduler creates the row, so a plain
    search of the dump could miss a secret there; rows written in plain JSON (Airflow 3.3 does
    so for tasks deferred through the execution API) are read as they are.
    """
    from cryptography.fernet import Fernet

    fernet = Fernet(fernet_key.encode())
    rows = pg.psql("SELECT id, classpath, kwargs FROM trigger ORDER BY id")
    decoded = []
    for row in rows.splitlines():
        trigger_id, classpath, stored = row.split("|", 2)
        encrypted = not stored.startswith("{")
        plain = fernet.decrypt(stored.encode()).decode() if encrypted else stored
        decoded.append(
            {"id": int(trigger_id), "classpath": classpath, "encrypted": encrypted, "kwargs": plain}
        )
    return decoded


def scan_triggers(triggers: Iterable[dict[str, Any]], secret: str) -> Findings:
    rows = list(triggers)
    plain = sum(1 for row in rows if not row["encrypted"])
    findings = Findings(f"trigger rows (kwargs decrypted; {plain} stored unencrypted)")
    for row in rows:
        findings.looked += 1
        if secret in json.dumps(row):
            findings.found.append(f"trigger {row['id']} ({row['classpath']})")
    return findings


def scan_files(roots: Iterable[Path], secret: str, *, exclude: Iterable[Path] = ()) -> Findings:
    """Every file under ``roots`` (logs, configs, anything a component wrote)."""
    needle = secret.encode()
    skip = [p.resolve() for p in exclude]
    findings = Findings("files (task, trigger and component logs, homes)")
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder, name)
                if any(path.resolve().is_relative_to(s) for s in skip) or path.is_symlink():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                findings.looked += 1
                if needle in data:
                    findings.found.append(str(path))
    return findings


def scan_s3(s3: MotoS3, secret: str) -> Findings:
    needle = secret.encode()
    findings = Findings("S3 objects (staging, ledgers, results, manifests)")
    for bucket, key, body in s3.objects():
        findings.looked += 1
        if needle in body:
            findings.found.append(f"s3://{bucket}/{key}")
    return findings
