"""The versioned sharing policy (contracts/policy.toml).

A rule never holds a limit of its own: it asks `policy_for(D)` for the version
in force on the record's business date.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from contracts.codes import RELATION_CODES

POLICY_FILE = Path(__file__).with_name("policy.toml")


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    effective_from: date
    near_relatives: tuple[str, ...]
    max_transfer_amount: Decimal
    max_daily_out_transfers: int
    forwarding_window_days: int
    max_cycle_length: int
    min_parent_child_age_gap_years: int
    min_grandparent_age_gap_years: int
    marriageable_age_male: int
    marriageable_age_female: int

    @property
    def version(self) -> str:
        """Policy version as written into summary.json: id plus file digest."""
        return f"{self.id}@{policy_file_digest()[:12]}"


@lru_cache(maxsize=None)
def policy_file_digest() -> str:
    return hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest()


@lru_cache(maxsize=None)
def load_policies() -> tuple[Policy, ...]:
    raw = tomllib.loads(POLICY_FILE.read_text(encoding="utf-8"))
    versions = []
    for v in raw["version"]:
        unknown = set(v["near_relatives"]) - set(RELATION_CODES)
        if unknown:
            raise ValueError(f"policy {v['id']} names unknown relation codes {sorted(unknown)}")
        versions.append(Policy(
            id=v["id"],
            title=v["title"],
            effective_from=v["effective_from"],
            near_relatives=tuple(v["near_relatives"]),
            max_transfer_amount=Decimal(v["max_transfer_amount"]),
            max_daily_out_transfers=int(v["max_daily_out_transfers"]),
            forwarding_window_days=int(v["forwarding_window_days"]),
            max_cycle_length=int(v["max_cycle_length"]),
            min_parent_child_age_gap_years=int(v["min_parent_child_age_gap_years"]),
            min_grandparent_age_gap_years=int(v["min_grandparent_age_gap_years"]),
            marriageable_age_male=int(v["marriageable_age_male"]),
            marriageable_age_female=int(v["marriageable_age_female"]),
        ))
    return tuple(sorted(versions, key=lambda p: p.effective_from))


def policy_for(day: date) -> Policy:
    """The policy version in force on `day` (the latest effective_from <= day)."""
    in_force = [p for p in load_policies() if p.effective_from <= day]
    if not in_force:
        raise ValueError(f"no sharing policy is in force on {day.isoformat()}")
    return in_force[-1]
