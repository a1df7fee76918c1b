"""Deterministic, vectorised random streams (no numpy in the environment).

Every draw is named: the stream for a name is seeded from sha256(seed:name),
so adding a new draw never shifts the others and a seed reproduces byte-identical
output. Uniforms come from pyarrow.compute.random (a seeded generator); integers
are derived from them with exact integer arithmetic, so money never passes
through a binary float except as a random *choice* of an integer fen amount.
"""
from __future__ import annotations

import hashlib
import random

import polars as pl
import pyarrow.compute as pc


class Rng:
    def __init__(self, seed: int):
        self.seed = int(seed)

    def sub_seed(self, name: str) -> int:
        h = hashlib.sha256(f"{self.seed}:{name}".encode()).digest()
        return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)

    def py(self, name: str) -> random.Random:
        """A Python Random for the few hundred planted cases."""
        return random.Random(self.sub_seed(name))

    def uniform(self, n: int, name: str) -> pl.Series:
        if n <= 0:
            return pl.Series(name, [], dtype=pl.Float64)
        return pl.Series(name, pc.random(n, initializer=self.sub_seed(name)))

    def integers(self, n: int, lo, hi, name: str) -> pl.Series:
        """Uniform integers in [lo, hi] (inclusive); lo/hi may be ints or Int64 Series."""
        u = self.uniform(n, name)
        lo_s = lo if isinstance(lo, pl.Series) else pl.Series([lo] * n, dtype=pl.Int64) if n else pl.Series([], dtype=pl.Int64)
        hi_s = hi if isinstance(hi, pl.Series) else pl.Series([hi] * n, dtype=pl.Int64) if n else pl.Series([], dtype=pl.Int64)
        df = pl.DataFrame({"u": u, "lo": lo_s.cast(pl.Int64), "hi": hi_s.cast(pl.Int64)})
        out = df.select(
            (pl.col("lo") + (pl.col("u") * (pl.col("hi") - pl.col("lo") + 1).cast(pl.Float64))
             .floor().cast(pl.Int64).clip(0, None)).clip(pl.col("lo"), pl.col("hi")).alias(name)
        ).to_series()
        return out

    def choice(self, n: int, weights, name: str) -> pl.Series:
        """Indices 0..len(weights)-1 drawn with the given weights."""
        total = float(sum(weights))
        cum, acc = [], 0.0
        for w in weights[:-1]:
            acc += w / total
            cum.append(acc)
        u = self.uniform(n, name)
        if not cum:
            return pl.Series(name, [0] * n, dtype=pl.Int64)
        return pl.Series(cum, dtype=pl.Float64).search_sorted(u, side="right").cast(pl.Int64).alias(name)
