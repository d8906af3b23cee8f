"""Figures of a model's predictions: binary metrics and the choice of its threshold."""

import numpy as np


def binary_metrics(y_true, p_bad, threshold=0.5):
    """accuracy, sensitivity, specificity, balanced accuracy and AUC of ``p_bad`` for
    binary ``y_true`` (1 = bad)."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    pred = (np.asarray(p_bad) >= threshold).astype(int)
    tp = int(((pred == 1) & (y_true == 1)).sum())
    tn = int(((pred == 0) & (y_true == 0)).sum())
    pos, neg = int((y_true == 1).sum()), int((y_true == 0).sum())
    sens = tp / pos if pos else float("nan")
    spec = tn / neg if neg else float("nan")
    auc = float(roc_auc_score(y_true, p_bad)) if pos and neg else float("nan")
    return {"n": int(len(y_true)), "n_bad": pos, "accuracy": round((tp + tn) / max(1, len(y_true)), 4),
            "sensitivity": round(sens, 4), "specificity": round(spec, 4),
            "balanced_accuracy": round((sens + spec) / 2, 4), "auc": round(auc, 4)}


def choose_threshold(y_true, p_bad, min_specificity=0.95):
    """Threshold (0.20-0.90) with the best balanced accuracy among those keeping specificity
    >= ``min_specificity`` on the out-of-fold predictions. Where none reaches it, the one with
    the highest specificity (then the best balanced accuracy): failing clean scans is what
    sends users back to rating by eye, so specificity comes first. Returns (threshold,
    whether ``min_specificity`` was reached)."""
    y_true = np.asarray(y_true).astype(int)
    scored = [(binary_metrics(y_true, p_bad, t), float(t)) for t in np.round(np.arange(0.2, 0.91, 0.01), 2)]
    reaching = [(m["balanced_accuracy"], t) for m, t in scored if m["specificity"] >= min_specificity]
    if reaching:
        return max(reaching, key=lambda r: (r[0], -r[1]))[1], True  # ties: the lowest
    return max(scored, key=lambda s: (s[0]["specificity"], s[0]["balanced_accuracy"], -s[1]))[1], False
