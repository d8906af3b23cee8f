"""How a scan's verdict is made, in one place: the threshold and its uncertain band, the
calibrated native detectors raising p_bad, the pass / fail / uncertain verdict and the
one-line reason for it.

    threshold, band = decision_rule(ensemble.threshold, ensemble.uncertain_band, user_threshold)
    outcome = decide(result, 0, threshold, band, ensemble.detectors, native_scores)

How the detectors are calibrated (on training volumes, never by hand): docs/scores.md.
"""

import numpy as np

from ..scores import SCORE_COLUMNS

# half-width of the uncertain band in log-odds: +-0.15 around a threshold of 0.5
UNCERTAIN_HALF_WIDTH_LOGIT = float(np.log(0.65 / 0.35))


def logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def uncertain_band(threshold, half_width_logit=UNCERTAIN_HALF_WIDTH_LOGIT):
    """The uncertain band (low, high) around ``threshold``: +-``half_width_logit`` in log-odds.
    It is +-0.15 around 0.5 and narrows towards 0 and 1, so a threshold near either end
    still leaves room for ``fail`` and ``pass`` (a band of +-0.15 in probability around a
    threshold of 0.86 would reach 1 and no scan could fail)."""
    centre = logit(threshold)
    low, high = (1 / (1 + np.exp(-(centre + d))) for d in (-half_width_logit, half_width_logit))
    return round(float(low), 3), round(float(high), 3)


def band_half_width_logit(band):
    """The log-odds half-width of a band (low, high), to move it to another threshold."""
    return float((logit(band[1]) - logit(band[0])) / 2)


def decision_rule(threshold, band, user_threshold=None):
    """(threshold, band) a scan is judged by: the model card's, or ``user_threshold``
    (``--threshold``) with the card's band moved around it at the same log-odds width."""
    if user_threshold is None or user_threshold < 0:
        return float(threshold), tuple(band)
    return float(user_threshold), uncertain_band(user_threshold, band_half_width_logit(band))


def detector_probability(score, calibration, threshold, half_width_logit):
    """A detector score on the ensemble's p_bad scale: ``threshold`` (the ensemble's) at the
    detector's threshold, the ensemble's uncertain band at the detector's ``low`` and
    ``high``, linear in log-odds against log(score) in between and above. Below ``low``
    (where 99% of clean training volumes lie) the detector has no evidence and gives 0, so
    it never moves a clean scan's p_bad there."""
    t, low, high = (float(calibration[k]) for k in ("threshold", "low", "high"))
    score = float(score)
    if score < low:
        return 0.0
    span = np.log(high / t) if score >= t else np.log(t / low)
    value = np.log(threshold / (1 - threshold)) + half_width_logit * np.log(score / t) / max(span, 1e-6)
    return float(1.0 / (1.0 + np.exp(-np.clip(value, -30, 30))))


def combine(p_bad, detector_scores, calibrations, threshold, half_width_logit):
    """The scan's p_bad with the detectors: the largest of the network's p_bad and each
    detector's probability. Returns (p_bad, {detector: probability}, the detector that set
    p_bad above the network's, or None)."""
    probabilities = {name: round(detector_probability(detector_scores[name], cal, threshold, half_width_logit), 4)
                     for name, cal in calibrations.items() if detector_scores.get(name) is not None}
    top = max(probabilities, key=probabilities.get) if probabilities else None
    if top is not None and probabilities[top] > p_bad:
        return probabilities[top], probabilities, top
    return float(p_bad), probabilities, None


def raise_p_bad(result, index, p_bad):
    """Raise volume ``index``'s p_bad in ``result`` (an ensemble ``QCResult``), and each
    fold's, to at least ``p_bad`` (a native-space detector's evidence, which every fold
    model lacks alike)."""
    result.p_bad[index] = max(float(result.p_bad[index]), p_bad)
    result.p_bad_folds[index] = np.maximum(result.p_bad_folds[index], p_bad)


def apply_detectors(result, index, detector_scores, calibrations, threshold, band):
    """Bring the detectors into volume ``index`` of an ensemble ``QCResult``: where one sets
    p_bad above the network's, raise the volume's p_bad and its folds' (``raise_p_bad``), so
    its verdict follows. Returns ({detector: probability}, the detector that did, or None)."""
    p_bad, probabilities, flagged = combine(float(result.p_bad[index]), detector_scores, calibrations,
                                            threshold, band_half_width_logit(band))
    if flagged:
        raise_p_bad(result, index, p_bad)
    return probabilities, flagged


def verdict(p_bad, p_bad_folds, threshold, band):
    """pass | fail | uncertain of one volume: ``uncertain`` inside ``band`` = (low, high), and
    also wherever the fold models disagree, some fold's mean ``p_bad`` at or above
    ``threshold`` and another's below: a verdict the ensemble is split on is left to a rater."""
    split = bool(np.any(p_bad_folds >= threshold) and np.any(p_bad_folds < threshold))
    if split or (band[0] <= p_bad <= band[1] and band[0] < band[1]):
        return "uncertain"
    return "fail" if p_bad >= threshold else "pass"


def verdicts(result, threshold, band):
    """``verdict`` of every volume of ``result``."""
    return [verdict(p, folds, threshold, band) for p, folds in zip(result.p_bad, result.p_bad_folds)]


def reason(result, index, threshold, band, p_bad_network, flagged=None, score=None, calibration=None,
           detectors=True):
    """One line saying why volume ``index`` got its verdict: which evidence set its p_bad
    (the network's ``p_bad_network``, or the detector ``flagged`` with its ``score`` and
    card ``calibration``) and where that lies against ``threshold`` and ``band``, or that
    the fold models disagree. ``detectors``: whether native detectors were applied."""
    folds = result.p_bad_folds[index]
    qc = verdict(result.p_bad[index], folds, threshold, band)
    above = int(np.sum(folds >= threshold))
    if qc == "uncertain" and 0 < above < len(folds):
        return (f"uncertain: the fold models disagree, {above} of {len(folds)} at or above the threshold "
                f"{threshold:.3g} (p_bad {result.p_bad[index]:.2f})")
    if flagged:
        low, high, cut = (float(calibration[k]) for k in ("low", "high", "threshold"))
        what = f"{SCORE_COLUMNS.get(flagged, flagged)} {float(score):.3g}"
        ranges = f"clean training scans up to {low:.3g}, simulated artifacts from {high:.3g}"
        if qc == "fail":
            return f"fail: {what} is at or above its threshold {cut:.3g} ({ranges})"
        side = "at or above" if float(score) >= cut else "below"
        return f"uncertain: {what} is above its clean range and {side} its threshold {cut:.3g} ({ranges})"
    network = f"the network's p_bad {p_bad_network:.2f}"
    if qc == "fail":
        return f"fail: {network} is at or above the threshold {threshold:.3g}"
    if qc == "uncertain":
        return f"uncertain: {network} is inside the uncertain band {band[0]:.3g}-{band[1]:.3g}"
    native = ("every native detector score inside its clean training range" if detectors
              else "no native detector applied")
    return f"pass: {network} is below the uncertain band ({band[0]:.3g}); {native}"


def decide(result, index, threshold, band, calibrations=None, detector_scores=None):
    """The verdict of volume ``index`` of ``result``: the calibrated detectors
    (``calibrations``, the card's) applied to its native ``detector_scores`` where there are
    both, then its verdict and reason. Returns a dict: p_bad_network, p_bad, qc, reason,
    flagged (the detector that raised p_bad, or None) and, where detectors were applied,
    p_detectors ({detector: probability})."""
    out = {"p_bad_network": round(float(result.p_bad[index]), 4)}
    applied = bool(calibrations and detector_scores)
    flagged = None
    if applied:
        out["p_detectors"], flagged = apply_detectors(result, index, detector_scores, calibrations, threshold, band)
    out["flagged"] = flagged
    out["reason"] = reason(result, index, threshold, band, out["p_bad_network"], flagged,
                           (detector_scores or {}).get(flagged), (calibrations or {}).get(flagged),
                           detectors=applied)
    out["qc"] = verdict(result.p_bad[index], result.p_bad_folds[index], threshold, band)
    out["p_bad"] = float(result.p_bad[index])
    return out
