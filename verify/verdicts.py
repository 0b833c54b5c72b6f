"""Statistics over a claim's seeds and the verdict they give, by the kind of claim.

Per-seed values -> mean, a 95% confidence interval of the mean (Student t, or a percentile bootstrap
where the ledger asks for it) and, where the claim is one run's number, a 95% prediction interval for
one new run -> a verdict against the claimed value and its tolerance band. The rule depends on the
claim's kind, which the quote decides (see README, "How verdicts are decided"):

* ``universal`` ("exactly", "cannot", "0%", "every"): every seed must satisfy the claim. One
  counterexample seed gives ``not reproduced`` and names the seed; with no counterexample the claim
  is ``reproduced`` from 5 seeds on, ``inconclusive`` below that.
* ``exact`` (a count or another deterministic value): every seed must satisfy the claim; any number
  of seeds decides.
* ``single_run`` (the source printed one run's number): ``reproduced`` when the claimed band meets
  the 95% prediction interval of one new run, mean +- t * s * sqrt(1 + 1/n); ``not reproduced``
  with its direction when the band lies wholly outside it. One-sided claims: the interval must lie on
  the claimed side of the bound.
* ``mean`` (the source reports a mean over runs): the confidence interval of the mean against the
  band: inside -> ``reproduced``, wholly outside -> ``not reproduced``, straddling an edge ->
  ``inconclusive`` (more seeds would decide).

A stochastic claim (universal, single_run, mean) needs at least ``MIN_SEEDS`` seeds for a definite
verdict, except that a counterexample refutes a universal claim at any number of seeds. The runner
adds ``not run`` (a prerequisite is missing, or only a reduced-size protocol ran) and ``measured``
(a finding with no claimed value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

COMPARISONS = ("equal", "at_least", "at_most", "exact")
CLAIM_KINDS = ("universal", "single_run", "mean", "exact")
# The comparisons each kind can be judged with (a single run's number is a value, not a bound).
KIND_COMPARISONS = {
    "universal": COMPARISONS,
    "exact": ("exact", "equal", "at_least", "at_most"),
    "single_run": ("equal", "at_least", "at_most"),
    "mean": ("equal", "at_least", "at_most"),
}
STOCHASTIC_KINDS = ("universal", "single_run", "mean")
MIN_SEEDS = 5
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run", "measured")
# Why a verdict is `not run` (its record's "not_run"): only the smoke size ran here; an input (dataset
# file, weights, script) is absent; the entry needs a GPU this session lacks.
PENDING, MISSING, DEVICE = "full protocol pending", "input missing", "needs CUDA"
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    interval: tuple[float, float]
    method: str  # "t", "bootstrap" or "point" (one seed, or all seeds equal)


def _checked(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarize")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"non-finite value among {data.tolist()}")
    return data


def summarize(values: Sequence[float], method: str = "t") -> Summary:
    """Mean and 95% confidence interval of the mean of the per-seed values."""
    data = _checked(values)
    if data.size == 1 or np.all(data == data[0]):
        # The value itself, not data.mean(): the mean of [0.1, 0.1, 0.1] is one ulp above 0.1.
        value = float(data[0])
        return Summary(int(data.size), value, 0.0, (value, value), "point")
    mean = float(data.mean())
    std = float(data.std(ddof=1))
    if method == "t":
        half = _t_quantile(data.size) * std / math.sqrt(data.size)
        return Summary(int(data.size), mean, std, (mean - half, mean + half), "t")
    if method == "bootstrap":
        # A fixed resampling stream: the interval is part of the stored result and must be reproducible.
        rng = np.random.default_rng(0)
        means = data[rng.integers(0, data.size, size=(BOOTSTRAP_RESAMPLES, data.size))].mean(axis=1)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(means, [tail, 100 - tail])
        return Summary(int(data.size), mean, std, (float(low), float(high)), "bootstrap")
    raise ValueError(f"unknown interval method {method!r}")


def _t_quantile(n: int) -> float:
    return float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1))


def prediction_interval(summary: Summary) -> tuple[float, float] | None:
    """95% prediction interval for one new run, mean +- t(n-1) * s * sqrt(1 + 1/n); None below 2 seeds."""
    if summary.n < 2:
        return None
    half = _t_quantile(summary.n) * summary.std * math.sqrt(1 + 1 / summary.n)
    return (summary.mean - half, summary.mean + half)


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


@dataclass(frozen=True)
class Judgement:
    """Everything a verdict rests on: the summary, the prediction interval (single-run claims) and the verdict."""

    summary: Summary
    verdict: Verdict
    prediction: tuple[float, float] | None = None


def _band(claimed: float | tuple[float, float], tolerance: float) -> tuple[float, float]:
    if isinstance(claimed, tuple):
        return claimed[0] - tolerance, claimed[1] + tolerance
    return claimed - tolerance, claimed + tolerance


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _accepted(comparison: str, claimed: float | tuple[float, float], tolerance: float) -> tuple[float, float]:
    """The closed range of values that satisfy the claim: its band, or a half-line for one-sided claims."""
    if comparison == "exact":
        if isinstance(claimed, tuple):
            raise ValueError("an exact comparison needs a single claimed number")
        return claimed, claimed
    if comparison == "equal":
        return _band(claimed, tolerance)
    if isinstance(claimed, tuple):
        raise ValueError(f"a {comparison} comparison needs a single claimed number")
    if comparison == "at_least":
        return claimed - tolerance, math.inf
    if comparison == "at_most":
        return -math.inf, claimed + tolerance
    raise ValueError(f"unknown comparison {comparison!r}")


def _accepted_text(comparison: str, low: float, high: float) -> str:
    if comparison == "exact":
        return f"exactly {_fmt(low)}"
    if comparison == "at_least":
        return f"at least {_fmt(low)}"
    if comparison == "at_most":
        return f"at most {_fmt(high)}"
    return f"band [{_fmt(low)}, {_fmt(high)}]"


def _interval_text(summary: Summary) -> str:
    low, high = summary.interval
    return f"mean {_fmt(summary.mean)}, 95% interval [{_fmt(low)}, {_fmt(high)}] over {summary.n} seed(s)"


def _too_few(summary: Summary, verdict: Verdict, min_seeds: int) -> Verdict:
    """A definite verdict from fewer than `min_seeds` seeds of a stochastic claim becomes inconclusive."""
    if summary.n >= min_seeds or verdict.status == "inconclusive":
        return verdict
    leaning = "reproduced" if verdict.status == "reproduced" else verdict.label
    return Verdict("inconclusive", verdict.direction,
                   f"only {summary.n} seed(s), a stochastic claim needs at least {min_seeds} (would read "
                   f"'{leaning}'): {verdict.reason}")


def _every_seed(values: Sequence[float], seeds: Sequence[int], summary: Summary, comparison: str,
                low: float, high: float) -> Verdict:
    """Every seed must satisfy the claim; the seeds that do not are named."""
    accepted = _accepted_text(comparison, low, high)
    above = [(s, v) for s, v in zip(seeds, values) if v > high]
    below = [(s, v) for s, v in zip(seeds, values) if v < low]
    if not above and not below:
        return Verdict("reproduced", None, f"every one of {len(values)} seed(s) is {accepted}; {_interval_text(summary)}")
    misses = sorted(above + below)
    named = ", ".join(f"seed {s}: {_fmt(v)}" for s, v in misses[:10]) + (" ..." if len(misses) > 10 else "")
    direction = "above" if not below else "below" if not above else None
    return Verdict("not reproduced", direction,
                   f"{len(misses)} of {len(values)} seed(s) not {accepted} ({named}); {_interval_text(summary)}")


def _interval_against(interval: tuple[float, float], low: float, high: float, comparison: str,
                      what: str) -> Verdict:
    """An interval against the accepted range: inside, wholly outside, or straddling an edge."""
    lo, hi = interval
    accepted = _accepted_text(comparison, low, high)
    if low <= lo and hi <= high:
        return Verdict("reproduced", None, f"{what} inside {accepted}")
    if hi < low:
        return Verdict("not reproduced", "below", f"{what} below {accepted}")
    if lo > high:
        return Verdict("not reproduced", "above", f"{what} above {accepted}")
    direction = "below" if lo < low else "above"
    return Verdict("inconclusive", direction, f"{what} straddles the {direction} edge of {accepted}")


def decide(values: Sequence[float], summary: Summary, claimed: float | tuple[float, float], comparison: str,
           tolerance: float, kind: str = "mean", seeds: Sequence[int] | None = None,
           min_seeds: int = MIN_SEEDS) -> Verdict:
    """The verdict of measured values against a claim of the given kind."""
    return judge(values, claimed, comparison, tolerance, kind, seeds, summary=summary, min_seeds=min_seeds).verdict


def judge(values: Sequence[float], claimed: float | tuple[float, float], comparison: str, tolerance: float,
          kind: str, seeds: Sequence[int] | None = None, method: str = "t",
          summary: Summary | None = None, min_seeds: int = MIN_SEEDS) -> Judgement:
    """Summary, prediction interval and verdict of per-seed values against a claim of the given kind.

    `min_seeds`: below it a stochastic claim's definite verdict becomes inconclusive (a universal
    claim's counterexample still refutes it). The ledger asks for MIN_SEEDS; fewer happen with
    `--seeds N`."""
    if kind not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {kind!r}")
    if comparison not in KIND_COMPARISONS[kind]:
        raise ValueError(f"a {kind} claim cannot be judged with comparison {comparison!r}")
    summary = summary or summarize(values, method)
    seeds = list(seeds) if seeds is not None else list(range(len(values)))
    low, high = _accepted(comparison, claimed, tolerance)
    if kind in ("universal", "exact"):
        verdict = _every_seed(values, seeds, summary, comparison, low, high)
        if kind == "universal" and verdict.status == "reproduced":
            verdict = _too_few(summary, verdict, min_seeds)
        return Judgement(summary, verdict)
    if kind == "mean":
        return Judgement(summary, _too_few(summary, _interval_against(summary.interval, low, high, comparison,
                                                                       _interval_text(summary)), min_seeds))
    # single_run: the claimed number is one draw; is it a plausible draw of a new run?
    prediction = prediction_interval(summary)
    if prediction is None:
        return Judgement(summary, Verdict("inconclusive", None, f"one seed gives no prediction interval; "
                                                                f"{_interval_text(summary)}"), None)
    what = (f"95% prediction interval of one run [{_fmt(prediction[0])}, {_fmt(prediction[1])}] "
            f"({_interval_text(summary)})")
    if comparison == "equal":
        lo, hi = prediction
        if hi < low:
            verdict = Verdict("not reproduced", "below", f"{what} below {_accepted_text(comparison, low, high)}")
        elif lo > high:
            verdict = Verdict("not reproduced", "above", f"{what} above {_accepted_text(comparison, low, high)}")
        else:
            verdict = Verdict("reproduced", None, f"{what} meets {_accepted_text(comparison, low, high)}")
    else:
        verdict = _interval_against(prediction, low, high, comparison, what)
    return Judgement(summary, _too_few(summary, verdict, min_seeds), prediction)
