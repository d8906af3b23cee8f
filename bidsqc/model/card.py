"""The model card: one JSON file that says what an ensemble expects and how well it did."""

import hashlib
import json
import os
from pathlib import Path

CARD_NAME = "model_card.json"
MASK_NAME = "input_mask.nii.gz"


class ModelCardError(ValueError):
    """The ensemble folder or its model card is missing, incomplete or inconsistent."""


def read_card(model_dir):
    """Read and check ``model_dir/model_card.json``; returns the card dict."""
    path = Path(model_dir) / CARD_NAME
    if not path.is_file():
        raise ModelCardError(f"{model_dir}: no {CARD_NAME}; not a bidsqc ensemble folder "
                             "(train one with bidsqc-train or omit --model for the shipped one)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("model_id", "input", "artifacts", "folds", "decision"):
        if key not in card:
            raise ModelCardError(f"{path}: missing field {key!r}")
    for key in ("shape", "affine", "normalisation", "mask_file", "template"):
        if key not in card["input"]:
            raise ModelCardError(f"{path}: missing field input.{key!r}")
    check_presmoothing(card, path)
    return card


def check_presmoothing(card, path):
    """Refuse a card whose ensemble saw images smoothed differently from this bidsqc's
    preprocessing: its ratings would be meaningless, not just less accurate."""
    from ..preprocessing.pipeline import PRESMOOTH_FWHM_MM

    trained = card["input"].get("presmooth_fwhm_mm")
    if trained is None or abs(float(trained) - PRESMOOTH_FWHM_MM) > 1e-6:
        seen = ("smoothed to the grid spacing (cards without input.presmooth_fwhm_mm)" if trained is None
                else f"smoothed to {trained} mm FWHM")
        raise ModelCardError(f"{path}: this ensemble was trained on images {seen}, but this bidsqc "
                             f"smooths to {PRESMOOTH_FWHM_MM} mm FWHM before resampling; retrain it "
                             "with bidsqc-train (or --init-from it) or use the bidsqc version it came with")


def _hash_file(digest, path, chunk=1 << 20):
    """Feed the bytes of ``path`` to ``digest``, in blocks."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest


def file_checksum(path):
    """sha256 of a file (a scan, a fold model)."""
    return _hash_file(hashlib.sha256(), path).hexdigest()


def write_json_atomic(path, payload):
    """Write JSON to ``path`` through a temporary file and rename (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


#: what an ensemble folder may hold besides its fold models and input mask (written by bidsqc-train)
ENSEMBLE_EXTRAS = ("model_card.json", "cv_predictions.tsv", "training_curves.png")


def ensemble_id_of(model_dir, fold_files):
    """The model id of fold model files: a hash of their checksums (what bidsqc-train names it)."""
    return "bidsqc-" + hashlib.sha1("".join(file_checksum(Path(model_dir) / f) for f in fold_files)
                                    .encode()).hexdigest()[:12]


def verify_ensemble_folder(model_dir, card):
    """Refuse a model folder that holds files an ensemble does not (a pickle, a script, a model
    in another format: nothing but the card's Keras fold models is ever loaded, and a folder
    that holds more is not what bidsqc-train wrote), or whose fold models are not those the
    card's model id was made from (replaced or damaged). Hidden files are ignored."""
    model_dir = Path(model_dir)
    allowed = set(card["folds"]) | {card["input"]["mask_file"]} | set(ENSEMBLE_EXTRAS)
    unexpected = sorted(p.name for p in model_dir.iterdir() if p.name not in allowed and not p.name.startswith("."))
    if unexpected:
        raise ModelCardError(f"{model_dir}: unexpected file(s) {', '.join(unexpected)}; an ensemble folder holds "
                             f"only {CARD_NAME}, its fold models, its input mask, cv_predictions.tsv and "
                             "training_curves.png (remove the others, or point --model at the folder bidsqc-train "
                             "wrote)")
    missing = [f for f in card["folds"] if not (model_dir / f).is_file()]
    if missing:
        raise ModelCardError(f"{model_dir}: fold model(s) {', '.join(missing)} listed in the model card are missing")
    found = ensemble_id_of(model_dir, card["folds"])
    if found != card["model_id"]:
        raise ModelCardError(f"{model_dir}: the fold models are not those of model {card['model_id']} (their checksums "
                             f"make {found}): replaced or damaged; copy the ensemble again")


def ensemble_checksum(model_dir, card):
    """sha256 over the fold model files, the input mask and the card's input section."""
    digest = hashlib.sha256()
    digest.update(json.dumps(card["input"], sort_keys=True).encode())
    for name in list(card["folds"]) + [card["input"]["mask_file"]]:
        _hash_file(digest, Path(model_dir) / name)
    return digest.hexdigest()


#: the sections of a model card a scan's rating depends on besides the fold models
RATING_SECTIONS = ("artifacts", "decision", "mc_samples", "detectors", "naming")


def rating_checksum(network_checksum, card, settings, version):
    """sha256 of all a scan's rating depends on besides the scan: the fold models and input
    (``ensemble_checksum``), the card's decision, detectors and artifact naming (which
    ``bidsqc-train --detectors-only`` rewrites without touching the models), the bidsqc
    ``version`` and the definitions of its native-space scores (``FEATURE_VERSIONS``) and
    the rating ``settings`` (template, MC samples, threshold). A scan rated under another
    one is rated again."""
    from ..scores import FEATURE_VERSIONS

    payload = {"networks": network_checksum, "card": {k: card.get(k) for k in RATING_SECTIONS},
               "settings": settings, "bidsqc": version, "scores": FEATURE_VERSIONS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
