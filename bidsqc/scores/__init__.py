"""Native-space scores of one scan: pure numpy/scipy measures on the image as acquired (its
own voxel grid, before any resampling), one module per family:

- ``spectrum``: spike, truncation
- ``background``: ghosting, background
- ``slices``: thick_slices, bad_slices (slice score), inner_slices, fold, uncovered
- ``intensity``: noise, bias

``scores(data, zooms, brain=...)`` computes them all, sharing the spectrum, the background
high-pass and the head mask. No calibration and no verdicts here: the model card calibrates
the detectors (bidsqc.training.calibrate) and bidsqc.model.decision applies them. What each
score measures and why it exists: docs/scores.md.
"""

import numpy as np

from .background import background_score, background_scores, ghost_score
from .intensity import bias_score, noise_score
from .slices import (brain_extent, brain_voxels, fold_score, inner_slice_score, slice_breaks, slice_score,
                     thick_score, uncovered_score)
from .spectrum import magnitude_spectrum, spike_score, truncation_score
from .volume import as_volume, foreground

#: the scores that are detectors: a calibrated one can raise p_bad (named after the artifact it detects)
DETECTORS = ("spike", "ghosting", "thick_slices", "bad_slices", "noise")
#: the output table's column of each detector's score
SCORE_COLUMNS = {"spike": "spike_score", "ghosting": "ghost_score", "thick_slices": "thick_score",
                 "bad_slices": "slice_score", "noise": "noise_score"}
#: every native-space score, in the order the artifact naming uses them
FEATURES = ("spike", "ghosting", "thick_slices", "truncation", "bias", "background", "bad_slices", "noise",
            "uncovered", "fold", "inner_slices")
#: the scores that need the scan's registration to the template (``brain_voxels``)
REGISTERED = ("bad_slices", "uncovered")
#: versions of the scores whose definition changed since they were first cached; a cache
#: (detectors.tsv) stores a score under ``feature_column(name)``, so an older one is recomputed
FEATURE_VERSIONS = {"spike": 3, "truncation": 3, "bad_slices": 2}

__all__ = ["DETECTORS", "SCORE_COLUMNS", "FEATURES", "REGISTERED", "FEATURE_VERSIONS", "feature_column", "scores",
           "spike_score", "truncation_score", "ghost_score", "background_score", "thick_score", "slice_score",
           "inner_slice_score", "fold_score", "uncovered_score", "noise_score", "bias_score", "brain_voxels",
           "brain_extent"]


def feature_column(name):
    """The column a cached score is stored under: its name, with ``_v<version>`` from its
    second definition on (FEATURE_VERSIONS)."""
    version = FEATURE_VERSIONS.get(name, 1)
    return name if version == 1 else f"{name}_v{version}"


def scores(data, zooms=(1.0, 1.0, 1.0), only=None, brain=None):
    """The native-space scores (FEATURES, or the names in ``only``) of one volume; the
    spectrum, the background high-pass and the head mask are computed once, and only where
    needed. ``brain``: the registered template brain (``brain_voxels``), which the scores in
    REGISTERED need; without it the slice score counts every break, and ``uncovered`` is
    left out (an error where ``only`` asks for it)."""
    data = np.ascontiguousarray(as_volume(data))  # a NIfTI reads Fortran-ordered; C order is faster here
    wanted = list(FEATURES) if only is None else [f for f in FEATURES if f in set(only)]
    if brain is None and "uncovered" in wanted:
        if only is not None:
            raise ValueError("the uncovered score needs the scan's registration to the template")
        wanted.remove("uncovered")
    out = {}
    if "uncovered" in wanted:
        out["uncovered"] = uncovered_score(data, brain)
    if {"spike", "truncation"} & set(wanted):
        magnitude = magnitude_spectrum(data, zooms)
        if "spike" in wanted:
            out["spike"] = spike_score(data, magnitude)
        if "truncation" in wanted:
            out["truncation"] = truncation_score(data, magnitude)
        del magnitude
    if {"ghosting", "background"} & set(wanted):
        out["ghosting"], out["background"] = background_scores(data, zooms)
    by_head = {"thick_slices": thick_score, "bias": bias_score, "bad_slices": slice_score, "noise": noise_score,
               "fold": fold_score, "inner_slices": inner_slice_score}
    if set(by_head) & set(wanted):
        positive = np.maximum(data, 0)
        head = foreground(positive)  # one head mask for the scores that use it
        breaks = slice_breaks(positive, zooms, head) \
            if head is not None and {"bad_slices", "inner_slices"} & set(wanted) else None
        for name, score in by_head.items():
            if name in wanted:
                extra = {"breaks": breaks} if name in ("bad_slices", "inner_slices") else {}
                if name == "bad_slices":
                    extra["extent"] = brain_extent(brain) if brain is not None else None
                out[name] = score(positive, zooms, head=head, **extra) if head is not None else 0.0
    return {f: out[f] for f in wanted}
