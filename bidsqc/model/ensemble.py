"""Load a k-fold ensemble from one folder and predict with Monte Carlo dropout.

    ens = Ensemble.load(model_dir)          # checks the card against every fold model
    result = ens.predict(volumes, mc_samples=4)   # volumes: (n, *ens.grid_shape) z-scored
"""

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from ..scores import DETECTORS, FEATURES
from .card import ModelCardError, ensemble_checksum, read_card
from .decision import UNCERTAIN_HALF_WIDTH_LOGIT, uncertain_band

LOGGER = logging.getLogger("bidsqc")

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "data" / "ensemble"
MC_SEED = 0  # default seed of the MC-dropout masks (recorded as mc_seed in the outputs)


@dataclass
class QCResult:
    """Per-volume ensemble output: ``p_bad`` (n,), ``p_bad_std`` (n,), ``p_artifacts``
    {artifact: (n,)}, ``p_bad_folds`` (n, folds) fold means. Verdicts, the detectors and
    reasons: bidsqc.model.decision."""

    p_bad: np.ndarray
    p_bad_std: np.ndarray
    p_artifacts: dict
    p_bad_folds: np.ndarray


def _custom_objects():
    from .network import MCDropout

    return {"MCDropout": MCDropout}


class Ensemble:
    """The fold models of one ensemble, with its model card and input mask."""

    def __init__(self, model_dir, card, models, mask):
        self.model_dir = Path(model_dir)
        self.card = card
        self.models = models
        self.mask = mask
        # the card's band; a band clipped at 0 or 1 (cards written before the log-odds band,
        # where fail or pass could become unreachable) is replaced once, here, with a warning
        band = tuple(float(b) for b in card["decision"]["uncertain_band"])
        if (band[0] <= 0 or band[1] >= 1) and 0 < self.threshold < 1:
            fixed = uncertain_band(self.threshold)
            LOGGER.warning("%s: the model card's uncertain band %s reaches 0 or 1; using %s (+-%.2f in "
                           "log-odds around the threshold) instead", self.model_dir, list(band), list(fixed),
                           UNCERTAIN_HALF_WIDTH_LOGIT)
            band = fixed
        self.uncertain_band = band

    @property
    def grid_shape(self):
        return tuple(int(s) for s in self.card["input"]["shape"])

    @property
    def grid_affine(self):
        return np.asarray(self.card["input"]["affine"], dtype=float)

    @property
    def artifacts(self):
        return list(self.card["artifacts"])

    @property
    def model_id(self):
        return self.card["model_id"]

    @property
    def detectors(self):
        """Calibrations of the native-space detectors ({name: {threshold, low, high, ...}});
        empty for an ensemble trained before them."""
        entry = self.card.get("detectors") or {}
        return {name: entry[name] for name in DETECTORS if name in entry}

    def name_artifact(self, p_artifacts, native_scores):
        """(artifact, {artifact: probability}) from the card's artifact naming
        (bidsqc.model.naming), or None for an ensemble without one or a scan without every
        native score."""
        from .naming import name_artifact

        entry = self.card.get("naming")
        if not entry or not native_scores or any(native_scores.get(f) is None for f in FEATURES):
            return None
        try:
            return name_artifact(entry, p_artifacts, native_scores, self.artifacts)
        except ValueError as exc:  # a card fit on other scores: name the old way, and say so
            LOGGER.warning("%s: %s", self.model_dir, exc)
            return None

    def likely_artifact(self, p_artifacts, native_scores=None, flagged=None):
        """The artifact a scan most likely has: the card's naming where it has one and the
        scan every native score; else the detector that raised p_bad (``flagged``); else
        the network's most probable artifact head."""
        named = self.name_artifact(p_artifacts, native_scores)
        if named:
            return named[0]
        return flagged or max(p_artifacts, key=p_artifacts.get)

    @property
    def threshold(self):
        return float(self.card["decision"]["threshold"])

    @classmethod
    def load(cls, model_dir=None):
        """Load every fold model (Keras native format, safe mode) and check them against the card."""
        import keras

        model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
        card = read_card(model_dir)
        shape = tuple(int(s) for s in card["input"]["shape"])
        mask_path = model_dir / card["input"]["mask_file"]
        if not mask_path.is_file():
            raise ModelCardError(f"{model_dir}: input mask {card['input']['mask_file']} is missing")
        mask = np.asarray(nib.load(mask_path).dataobj) > 0
        if mask.shape != shape:
            raise ModelCardError(f"{mask_path}: mask shape {mask.shape} does not match the model card grid {shape}")
        models = []
        for name in card["folds"]:
            path = model_dir / name
            if not path.is_file():
                raise ModelCardError(f"{model_dir}: fold model {name} listed in the model card is missing")
            model = keras.models.load_model(path, custom_objects=_custom_objects(), compile=False,
                                            safe_mode=True)
            model_shape = tuple(int(s) for s in model.input_shape[1:4])
            if model_shape != shape:
                raise ModelCardError(f"{path}: model input grid {model_shape} does not match the model "
                                     f"card grid {shape}; the card and the fold models are from different "
                                     "ensembles")
            n_art = int(model.get_layer("artifacts").output.shape[-1])
            if n_art != len(card["artifacts"]):
                raise ModelCardError(f"{path}: {n_art} artifact outputs but the model card lists "
                                     f"{len(card['artifacts'])} artifact types")
            models.append(model)
        if not models:
            raise ModelCardError(f"{model_dir}: the model card lists no fold models")
        return cls(model_dir, card, models, mask)

    def checksum(self):
        return ensemble_checksum(self.model_dir, self.card)

    def predict(self, volumes, mc_samples=None, batch_size=16, seed=MC_SEED, folds=None):
        """Predict z-scored volumes (n, x, y, z) with every fold (or the fold indices
        ``folds``) and ``mc_samples`` MC-dropout passes each; returns a QCResult. Passes are
        batched: each copy gets its own mask. The dropout masks are drawn from ``seed`` afresh
        for every volume and fold, so a scan gets the same rating whatever else is in the run
        (``seed=None``: not reproducible)."""
        volumes = np.asarray(volumes, dtype=np.float32)
        if volumes.ndim == 3:
            volumes = volumes[None]
        if tuple(volumes.shape[1:]) != self.grid_shape:
            raise ValueError(f"volumes of shape {volumes.shape[1:]} given; this ensemble needs {self.grid_shape}")
        mc_samples = int(mc_samples or self.card.get("mc_samples", 4))
        if mc_samples < 1:
            raise ValueError("mc_samples must be at least 1")
        n = volumes.shape[0]
        folds = list(range(len(self.models))) if folds is None else [int(f) for f in folds]
        p_bad = np.zeros((n, len(folds), mc_samples), np.float32)
        p_art = np.zeros((n, len(folds), mc_samples, len(self.artifacts)), np.float32)
        for i in range(n):
            repeated = np.repeat(volumes[i:i + 1, ..., None], mc_samples, axis=0)
            for j, f in enumerate(folds):
                model = self.models[f]
                if seed is not None:
                    _seed_mc_dropout(model, seed * 1009 + f)
                out = model.predict_on_batch(repeated) if mc_samples <= batch_size else \
                    model.predict(repeated, batch_size=batch_size, verbose=0)
                p_bad[i, j] = np.asarray(out["p_bad"])[:, 0]
                p_art[i, j] = np.asarray(out["artifacts"])
        flat = p_bad.reshape(n, -1)
        arts = p_art.reshape(n, -1, len(self.artifacts)).mean(axis=1)
        return QCResult(p_bad=flat.mean(axis=1), p_bad_std=flat.std(axis=1),
                        p_artifacts={a: arts[:, j] for j, a in enumerate(self.artifacts)},
                        p_bad_folds=p_bad.mean(axis=2))


def _seed_mc_dropout(model, seed):
    """Reset the random state of every MC-dropout layer of ``model`` from ``seed``."""
    from .network import MCDropout

    for k, layer in enumerate(layer for layer in model.layers if isinstance(layer, MCDropout)):
        if getattr(layer, "seed_generator", None) is None:
            continue  # rate 0 (e.g. trained with --dropout 0): an identity with no random state
        state = layer.seed_generator.state
        state.assign(np.array([seed * 31 + k + 1, 0], dtype=state.dtype))


@lru_cache(maxsize=2)
def load_cached(model_dir):
    """Load an ensemble once per process (Nipype workers reuse it across scans)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return Ensemble.load(model_dir)
