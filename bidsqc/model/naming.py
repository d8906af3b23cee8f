"""Naming the artifact of a bad scan from the network's per-artifact heads and the
native-space scores (bidsqc.detectors.FEATURES).

The network's artifact heads see a 2.5 mm masked volume, where motion, thick slices, Gibbs
ringing and a bias field all look like a blurred or uneven brain; it names most of them
``gibbs``. The native scores measure on the scan's own grid what tells them apart (a
cliff in the spectrum, slices copied along one axis, a smooth intensity field, structure
in the background). A multinomial logistic regression on both, fit on out-of-fold network
predictions of training volumes (never on a volume a fold model trained on), names the
artifact. It is stored in the model card as plain numbers; inference needs only numpy.
"""

import numpy as np

from ..detectors import FEATURES

#: clipping of the network's probabilities before their log-odds
P_CLIP = 1e-4
#: inverse regularisation strength of the logistic regression
NAMING_C = 1.0


#: the naming's columns read on a log scale, log(score + 1e-3), each with the score it reads:
#: ghosting (a correlation that spans decades near 0; its column has kept the score's name
#: since the first card) and uncovered (a share of the brain: 0 for most artifacts, 0.02-0.08
#: for mild missing coverage); a card fit before session 24b reads uncovered as it is, in a
#: column named ``uncovered``
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


def fit(p_artifacts, native_scores, labels, groups, artifacts, severities=None, features=FEATURES):
    """Fit the naming model on artifact volumes. ``p_artifacts``: (n, len(artifacts))
    out-of-fold network probabilities; ``native_scores``: n dicts of FEATURES; ``labels``:
    the artifact of each; ``groups``: subjects, for a grouped cross-validated top-1 that the
    card reports next to the network heads' own; ``severities`` (optional, n): the
    cross-validated top-1 is also reported per severity; ``features``: the native scores
    used. Returns the model card's ``naming`` entry."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    p_artifacts = np.asarray(p_artifacts, np.float64)
    x = np.stack([feature_vector(dict(zip(artifacts, p)), s, artifacts, native_columns(features))
                  for p, s in zip(p_artifacts, native_scores)])
    y = np.asarray(labels)
    groups = np.asarray(groups)
    classes = [a for a in artifacts if a in set(labels)]
    if len(classes) < 2:
        raise ValueError("artifact naming needs volumes of at least two artifact types")

    def train(rows):
        mean, scale = x[rows].mean(axis=0), x[rows].std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        model = LogisticRegression(C=NAMING_C, max_iter=5000)
        model.fit((x[rows] - mean) / scale, y[rows])
        return model, mean, scale

    n_splits = min(5, len(set(groups)))
    cv_hits, cv_rows = [], []
    if n_splits >= 2:
        for fit_rows, test_rows in GroupKFold(n_splits=n_splits).split(x, y, groups):
            if len(set(y[fit_rows])) < 2:
                continue
            model, mean, scale = train(fit_rows)
            cv_hits += list(model.predict((x[test_rows] - mean) / scale) == y[test_rows])
            cv_rows += list(test_rows)
    by_severity = {}
    if severities is not None:
        for severity in sorted({str(severities[r]) for r in cv_rows}):
            hits = [h for h, r in zip(cv_hits, cv_rows) if str(severities[r]) == severity]
            by_severity[severity] = round(float(np.mean(hits)), 4)
    network_hits = [artifacts[int(np.argmax(p))] == label for p, label in zip(p_artifacts, y)]
    model, mean, scale = train(np.arange(len(y)))
    return {"method": "multinomial logistic regression (C=%g) on standardised features, fit on out-of-fold "
                      "network probabilities of the training volumes with artifacts" % NAMING_C,
            "features": feature_names(artifacts, features), "artifacts": [str(c) for c in model.classes_],
            "mean": np.round(mean, 6).tolist(), "scale": np.round(scale, 6).tolist(),
            "coef": np.round(model.coef_, 6).tolist(), "intercept": np.round(model.intercept_, 6).tolist(),
            "n_volumes": int(len(y)), "n_subjects": int(len(set(groups))),
            "cv_top1": round(float(np.mean(cv_hits)), 4) if cv_hits else None,
            **({"cv_top1_by_severity": by_severity} if by_severity else {}),
            "network_top1": round(float(np.mean(network_hits)), 4)}


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
