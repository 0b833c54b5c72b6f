"""Statistics over a claim's seeds and the verdict they give.

Per-seed values -> mean and a 95% interval (Student t, or a percentile bootstrap where the ledger
asks for it) -> a verdict against the claimed value and its tolerance band:

* ``reproduced``: the interval lies inside the band (one-sided: on the claimed side of the bound;
  exact: every seed equals the claimed value);
* ``not reproduced``: the interval lies wholly outside, with the direction (above or below);
* ``inconclusive``: the interval straddles an edge of the band, so more seeds would decide;
* ``not run``: set by the runner when a prerequisite is missing;
* ``measured``: a finding with no claimed value, reported as a measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

COMPARISONS = ("equal", "at_least", "at_most", "exact")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run", "measured")
EXPECTABLE = (
    "reproduced",
    "not reproduced",
    "not reproduced (above)",
    "not reproduced (below)",
    "inconclusive",
    "not run",
    "measured",
)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    interval: tuple[float, float]
    method: str  # "t", "bootstrap" or "point" (one seed, or all seeds equal)


def summarize(values: Sequence[float], method: str = "t") -> Summary:
    """Mean and 95% interval of the per-seed values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarize")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"non-finite value among {data.tolist()}")
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return Summary(int(data.size), mean, 0.0, (mean, mean), "point")
    std = float(data.std(ddof=1))
    if method == "t":
        half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, df=data.size - 1)) * std / math.sqrt(data.size)
        return Summary(int(data.size), mean, std, (mean - half, mean + half), "t")
    if method == "bootstrap":
        # A fixed resampling stream: the interval is part of the stored result and must be reproducible.
        rng = np.random.default_rng(0)
        means = data[rng.integers(0, data.size, size=(BOOTSTRAP_RESAMPLES, data.size))].mean(axis=1)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(means, [tail, 100 - tail])
        return Summary(int(data.size), mean, std, (float(low), float(high)), "bootstrap")
    raise ValueError(f"unknown interval method {method!r}")


@dataclass(frozen=True)
class Verdict:
    status: str
    direction: str | None  # "above" / "below" for not reproduced and inconclusive, else None
    reason: str

    @property
    def label(self) -> str:
        if self.status == "not reproduced" and self.direction:
            return f"not reproduced ({self.direction})"
        return self.status

    def matches(self, expected: str) -> bool:
        """True when this verdict is what the ledger expects ("not reproduced" matches either direction)."""
        return expected in (self.status, self.label)


def _band(claimed: float | tuple[float, float], tolerance: float) -> tuple[float, float]:
    if isinstance(claimed, tuple):
        return claimed[0] - tolerance, claimed[1] + tolerance
    return claimed - tolerance, claimed + tolerance


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def decide(
    values: Sequence[float],
    summary: Summary,
    claimed: float | tuple[float, float],
    comparison: str,
    tolerance: float,
) -> Verdict:
    """The verdict of measured values against a claim."""
    low, high = summary.interval
    interval_text = f"mean {_fmt(summary.mean)}, 95% interval [{_fmt(low)}, {_fmt(high)}] over {summary.n} seed(s)"
    if comparison == "exact":
        target = claimed if not isinstance(claimed, tuple) else None
        if target is None:
            raise ValueError("an exact comparison needs a single claimed number")
        misses = [v for v in values if v != target]
        if not misses:
            return Verdict("reproduced", None, f"every seed equals {_fmt(target)} exactly")
        direction = "above" if summary.mean > target else "below"
        return Verdict(
            "not reproduced", direction, f"{len(misses)} of {len(values)} seed(s) differ from {_fmt(target)}; {interval_text}"
        )
    if comparison == "equal":
        band_low, band_high = _band(claimed, tolerance)
        band_text = f"band [{_fmt(band_low)}, {_fmt(band_high)}]"
        if band_low <= low and high <= band_high:
            return Verdict("reproduced", None, f"{interval_text} inside {band_text}")
        if high < band_low:
            return Verdict("not reproduced", "below", f"{interval_text} below {band_text}")
        if low > band_high:
            return Verdict("not reproduced", "above", f"{interval_text} above {band_text}")
        direction = "below" if low < band_low else "above"
        return Verdict("inconclusive", direction, f"{interval_text} straddles the {direction} edge of {band_text}")
    if isinstance(claimed, tuple):
        raise ValueError(f"a {comparison} comparison needs a single claimed number")
    if comparison == "at_least":
        bound = claimed - tolerance
        if low >= bound:
            return Verdict("reproduced", None, f"{interval_text}, at least {_fmt(bound)}")
        if high < bound:
            return Verdict("not reproduced", "below", f"{interval_text}, below {_fmt(bound)}")
        return Verdict("inconclusive", "below", f"{interval_text} straddles the bound {_fmt(bound)}")
    if comparison == "at_most":
        bound = claimed + tolerance
        if high <= bound:
            return Verdict("reproduced", None, f"{interval_text}, at most {_fmt(bound)}")
        if low > bound:
            return Verdict("not reproduced", "above", f"{interval_text}, above {_fmt(bound)}")
        return Verdict("inconclusive", "above", f"{interval_text} straddles the bound {_fmt(bound)}")
    raise ValueError(f"unknown comparison {comparison!r}")
