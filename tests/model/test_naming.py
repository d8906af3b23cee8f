"""Artifact naming (bidsqc.model.naming): a logistic regression on the network's artifact
heads and the native-space scores, stored in the card as numbers."""

import numpy as np
import pytest

from bidsqc.model.naming import feature_names, feature_vector, name_artifact
from bidsqc.scores import FEATURES
from bidsqc.training.calibrate import fit_naming_model as fit

ARTIFACTS = ["motion", "gibbs", "thick_slices"]


def _volumes(rng, n_subjects=12):
    """Per subject one volume of each artifact: the network's heads all favour gibbs; only
    the native scores tell motion (background power) and thick slices (thick score) apart."""
    p, native, labels, groups = [], [], [], []
    for subject in range(n_subjects):
        for artifact in ARTIFACTS:
            p.append([0.3 + rng.uniform(-0.05, 0.05), 0.6 + rng.uniform(-0.05, 0.05), 0.2])
            score = {f: float(rng.normal(0, 0.1)) for f in FEATURES}
            score["ghosting"] = 0.01
            score["thick_slices"] = 4.0 + rng.normal(0, 0.3) if artifact == "thick_slices" else 0.1
            score["truncation"] = 3.0 + rng.normal(0, 0.3) if artifact == "gibbs" else 0.3
            score["background"] = -3.0 + rng.normal(0, 0.3) if artifact == "motion" else -6.0
            native.append(score)
            labels.append(artifact)
            groups.append(f"sub-{subject}")
    return np.array(p), native, labels, groups


def test_naming_learns_what_the_native_scores_tell_apart():
    p, native, labels, groups = _volumes(np.random.default_rng(0))
    entry = fit(p, native, labels, groups, ARTIFACTS)
    assert entry["features"] == feature_names(ARTIFACTS)
    assert entry["network_top1"] == pytest.approx(1 / 3, abs=1e-3)  # the heads name everything gibbs
    assert entry["cv_top1"] >= 0.95 and entry["n_subjects"] == 12
    assert "cv_top1_by_severity" not in entry
    severities = ["mild" if i % 2 else "severe" for i in range(len(labels))]
    by_severity = fit(p, native, labels, groups, ARTIFACTS, severities=severities)["cv_top1_by_severity"]
    assert set(by_severity) == {"mild", "severe"}
    assert entry["cv_top1"] == pytest.approx((by_severity["mild"] + by_severity["severe"]) / 2, abs=1e-3)
    test_p, test_native, test_labels, _ = _volumes(np.random.default_rng(1), n_subjects=3)
    for probs, score, label in zip(test_p, test_native, test_labels):
        name, probabilities = name_artifact(entry, dict(zip(ARTIFACTS, probs)), score, ARTIFACTS)
        assert name == label and probabilities[name] == max(probabilities.values())
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-3)


def test_a_card_fit_before_a_score_was_added_still_names():
    """A card's naming keeps the native scores it was fit on: one fit without the last score
    (as a card from before it was added) names from its own features, and gives the same
    names as when that score is missing from the scan's scores altogether."""
    p, native, labels, groups = _volumes(np.random.default_rng(0))
    entry = fit(p, native, labels, groups, ARTIFACTS, features=FEATURES[:-1])
    assert entry["features"] == feature_names(ARTIFACTS, FEATURES[:-1]) and len(entry["mean"]) == len(entry["features"])
    test_p, test_native, test_labels, _ = _volumes(np.random.default_rng(1), n_subjects=3)
    for probs, score, label in zip(test_p, test_native, test_labels):
        older = {f: v for f, v in score.items() if f != FEATURES[-1]}
        name = name_artifact(entry, dict(zip(ARTIFACTS, probs)), score, ARTIFACTS)
        assert name == name_artifact(entry, dict(zip(ARTIFACTS, probs)), older, ARTIFACTS) and name[0] == label


def test_uncovered_is_read_on_a_log_scale_by_a_new_card_and_as_it_is_by_an_older_one():
    """The share of the brain outside the field of view spans decades near 0 (0 for most
    artifacts, a few per cent for mild missing coverage): a card fit now reads it as
    log(uncovered + 0.001), in a column named ``log_uncovered``; a card fit before reads
    its ``uncovered`` column as it is, and both name."""
    p, native, labels, groups = _volumes(np.random.default_rng(0), n_subjects=4)
    entry = fit(p, native, labels, groups, ARTIFACTS)
    columns = entry["features"][len(ARTIFACTS):]
    assert "log_uncovered" in columns and "uncovered" not in columns
    older = [("uncovered" if c == "log_uncovered" else c) for c in columns]
    score = dict(native[0], uncovered=0.02, ghosting=0.05)
    new_x = feature_vector(dict(zip(ARTIFACTS, p[0])), score, ARTIFACTS, columns)
    old_x = feature_vector(dict(zip(ARTIFACTS, p[0])), score, ARTIFACTS, older)
    at = len(ARTIFACTS) + columns.index("log_uncovered")
    assert new_x[at] == pytest.approx(np.log(0.021)) and old_x[at] == pytest.approx(0.02)
    ghost = len(ARTIFACTS) + columns.index("ghosting")
    assert new_x[ghost] == old_x[ghost] == pytest.approx(np.log(0.051))  # read on a log scale by every card
    for card_entry in (entry, dict(entry, features=entry["features"][:len(ARTIFACTS)] + older)):
        name, probabilities = name_artifact(card_entry, dict(zip(ARTIFACTS, p[0])), score, ARTIFACTS)
        assert name in ARTIFACTS and sum(probabilities.values()) == pytest.approx(1, abs=1e-3)


def test_naming_from_other_features_fails_clearly():
    p, native, labels, groups = _volumes(np.random.default_rng(0), n_subjects=4)
    entry = fit(p, native, labels, groups, ARTIFACTS)
    unknown = dict(entry, features=entry["features"][:-1] + ["a_score_from_a_later_version"])
    shorter = dict(entry, features=entry["features"][:-1])
    for card_entry in (unknown, shorter):
        with pytest.raises(ValueError, match="detectors-only"):
            name_artifact(card_entry, dict(zip(ARTIFACTS, p[0])), native[0], ARTIFACTS)
    with pytest.raises(ValueError, match="two artifact types"):
        fit(p[:1], native[:1], labels[:1], groups[:1], ARTIFACTS)
