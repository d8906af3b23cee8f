"""Naming the artifact of a flagged scan: a multinomial logistic regression, stored in the
model card as plain numbers, on the network's per-artifact heads and the native-space scores
(bidsqc.scores.FEATURES); numpy only. Fit by bidsqc.training.calibrate.fit_naming_model; why
and how: docs/scores.md.
"""

import numpy as np

from ..scores import FEATURES

#: clipping of the network's probabilities before their log-odds
P_CLIP = 1e-4
#: inverse regularisation strength of the logistic regression
NAMING_C = 1.0


#: the naming's columns read on a log scale, log(score + 1e-3), each with the score it reads:
#: ghosting (a correlation that spans decades near 0; its column has kept the score's name
#: since the first card) and uncovered (a share of the brain: 0 for most artifacts, 0.02-0.08
#: for mild missing coverage); a card fit before the naming read it on a log scale reads
#: uncovered as it is, in a column named ``uncovered``
LOG_COLUMNS = {"ghosting": "ghosting", "log_uncovered": "uncovered"}
#: the column this version fits for a native score, where it is not the score's own name
COLUMN_OF = {"uncovered": "log_uncovered"}


def native_columns(features=FEATURES):
    """The naming's columns for the native scores ``features``."""
    return [COLUMN_OF.get(f, f) for f in features]


def _score_of(column):
    return LOG_COLUMNS.get(column, column)


def _native_value(column, native_scores):
    value = float(native_scores[_score_of(column)])
    if column in LOG_COLUMNS:
        return float(np.log(max(value, 0.0) + 1e-3))
    return value


def feature_names(artifacts, features=FEATURES):
    return [f"logit_p_{a}" for a in artifacts] + native_columns(features)


def feature_vector(p_artifacts, native_scores, artifacts, columns=None):
    """(len(artifacts) + len(columns),) float64: the log-odds of each artifact head's
    probability, then each native column (``native_columns``: this version's by default;
    a card's own when it names with them)."""
    columns = native_columns() if columns is None else columns
    p = np.clip(np.array([float(p_artifacts[a]) for a in artifacts]), P_CLIP, 1 - P_CLIP)
    native = [_native_value(c, native_scores) for c in columns]
    return np.concatenate([np.log(p / (1 - p)), native])


def name_artifact(entry, p_artifacts, native_scores, artifacts):
    """(artifact, {artifact: probability}) from the card's ``naming`` entry; ``artifacts``
    is the ensemble's head order, which the entry's features follow. The entry's native
    columns are its own (a card fit before a score was added goes on without it, and one
    fit before a score was read on a log scale reads it as it is), and this version must
    compute each one's score."""
    columns = list(entry["features"][len(artifacts):])
    if entry["features"][:len(artifacts)] != feature_names(artifacts, ()) \
            or not {_score_of(c) for c in columns} <= set(FEATURES) or len(entry["mean"]) != len(entry["features"]):
        raise ValueError("the model card's artifact naming was fit on other features than this version computes; "
                         "rerun bidsqc-train --detectors-only on the ensemble")
    x = feature_vector(p_artifacts, native_scores, artifacts, columns)
    x = (x - np.asarray(entry["mean"])) / np.asarray(entry["scale"])
    coef, intercept = np.asarray(entry["coef"]), np.asarray(entry["intercept"])
    names = list(entry["artifacts"])
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row, for the second class
        logits = np.array([0.0, float(x @ coef[0] + intercept[0])])
    else:
        logits = coef @ x + intercept
    prob = np.exp(logits - logits.max())
    prob /= prob.sum()
    best = int(np.argmax(prob))
    return names[best], {n: round(float(p), 4) for n, p in zip(names, prob)}
