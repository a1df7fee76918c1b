"""Operations defaults (issue 11): the nightly run's waiting, look-back and alerts.

Every value here can be overridden by a `recon` option or its environment
variable (flows/cli.py); code never repeats them as literals.
"""
from __future__ import annotations

from datetime import time

# Waiting for late provinces: the run for D starts at 02:30 on D+1 and waits for
# every live province's complete folder until this time of D+1 (Asia/Shanghai).
DEADLINE = time(4, 30)
POLL_SECONDS = 60.0           # how often the inbox is looked at while waiting

# Late and corrected deliveries: processed dates up to this many days back are
# checked for inputs that changed since their run.
LOOKBACK_DAYS = 30
HASH_CHUNK_BYTES = 1 << 20    # sha256 of inbox files is streamed in chunks of this size

# Alerts: ERROR findings of a date above this multiple of the median of the
# previous processed dates (at most BASELINE_DAYS of them, at least
# BASELINE_MIN_DAYS) raise an alert. A median of 0 counts as 1, so a rule-free
# week followed by a handful of errors is not an "infinite" spike.
ERROR_SPIKE_FACTOR = 3.0
BASELINE_DAYS = 7
BASELINE_MIN_DAYS = 3
