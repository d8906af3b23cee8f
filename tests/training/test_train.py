"""A tiny real training run (2 folds, 2 epochs, 5 mm grid) whose ensemble the application
loads and runs; model cards that do not match their models fail to load clearly; the shipped
card records the options of the documented training command."""

import io
import json
import shlex
import shutil
import zipfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from conftest import block_mean

from bidsqc.artifacts import ARTIFACTS
from bidsqc.artifacts.shift import SHIFT_RANGES
from bidsqc.cli.parser import get_train_parser
from bidsqc.model.card import ModelCardError, read_card
from bidsqc.model.decision import band_half_width_logit, uncertain_band
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR, Ensemble
from bidsqc.model.naming import native_columns
from bidsqc.preprocessing.pipeline import PRESMOOTH_FWHM_MM
from bidsqc.preprocessing.resample import zscore
from bidsqc.scores import DETECTORS, FEATURES
from bidsqc.training.augment import SPATIAL_P, augment, brain_distance, moved_backgrounds, scalp_layers
from bidsqc.training.calibrate import add_detectors, fit_naming, native_plan
from bidsqc.training.dataset import (_job_key, add_moves, assign_keys, build_dataset, job_shift, naming_crop_jobs,
                                     naming_jobs, naming_mild_jobs, native_image, plan_variants, read_labels)
from bidsqc.training.folds import train_ensemble
from bidsqc.training.geometry import JITTER_RANGES, SPATIAL_RANGES, jitter_move, spatial_transform
from bidsqc.training.metrics import choose_threshold

TINY_GRID = (32, 38, 32)


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory, shared_data, templateflow_home):
    """A real training run on two ds002748 scans at 2 mm: 2 folds, 2 epochs, a 5 mm grid."""
    root = tmp_path_factory.mktemp("tiny")
    labels = root / "labels.tsv"
    rows = ["source_file\trating\tsubject"]
    for sub in ("01", "05"):
        scan = block_mean(shared_data / "ds002748" / f"sub-{sub}_T1w.nii.gz", root / f"sub-{sub}_T1w.nii.gz")
        rows.append(f"{scan}\tgood\tsub-{sub}")
    labels.write_text("\n".join(rows) + "\n")
    card = train_ensemble(read_labels(labels), root / "ensemble", root / "cache", folds=2, epochs=2,
                          batch_size=4, n_clean_variants=0, grid_shape=TINY_GRID, spacing_mm=5.0, nprocs=2,
                          mc_samples=2, seed=1)
    return root / "ensemble", card


def test_training_writes_a_complete_ensemble(tiny_ensemble):
    folder, card = tiny_ensemble
    assert read_card(folder) == card
    assert card["input"]["shape"] == list(TINY_GRID)
    assert len(card["folds"]) == 2 and all((folder / f).is_file() for f in card["folds"])
    assert (folder / "training_curves.png").stat().st_size > 1000
    # fold models are saved for inference: weights only, no optimizer state
    for name in card["folds"]:
        with zipfile.ZipFile(folder / name) as archive, archive.open("model.weights.h5") as raw:
            with h5py.File(io.BytesIO(raw.read()), "r") as weights:
                assert "layers" in weights and "optimizer" not in weights, list(weights)
    assert card["training"]["n_volumes"] == 22  # 2 scans x (original + 10 artifacts)
    assert len(card["training"]["dataset_manifest_sha256"]) == 64
    for fold in card["metrics"]["per_fold"]:
        assert set(fold) >= {"accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc"}
    # subjects never share folds
    subjects = [set(f["subjects"]) for f in card["metrics"]["per_fold"]]
    assert not subjects[0] & subjects[1]
    lo, hi = card["decision"]["uncertain_band"]
    assert lo <= card["decision"]["threshold"] <= hi
    assert (lo, hi) == uncertain_band(card["decision"]["threshold"])
    # the native-space detectors are calibrated on the training scans: 4 clean, 2 of each artifact
    assert {n for n in card["detectors"] if isinstance(card["detectors"][n], dict)} == set(DETECTORS)
    for name in DETECTORS:
        cal = card["detectors"][name]
        assert cal["n_clean"] == 4 and cal["n_artifact"] == 2  # 2 as they are, 2 resliced
        assert 0 < cal["low"] <= cal["threshold"] <= cal["high"]
    assert (folder.parent / "cache" / "detectors.tsv").is_file()
    # the artifact naming is fit on the out-of-fold predictions of the 20 severe volumes, of
    # one mild version of each artifact per scan (the detectors above saw only the severe) and
    # of a mild and a severe missing coverage cut off the array per scan
    naming = card["naming"]
    assert naming["n_volumes"] == 44 and naming["n_subjects"] == 2
    assert naming["features"][-len(FEATURES):] == native_columns(FEATURES)
    assert set(naming["cv_top1_by_severity"]) == {"mild", "severe"}
    assert naming["artifacts"] == sorted(ARTIFACTS)
    assert np.asarray(naming["coef"]).shape == (len(ARTIFACTS), len(naming["features"]))
    assert 0 <= naming["cv_top1"] <= 1 and 0 <= naming["network_top1"] <= 1


def test_detectors_only_recalibrates_the_same_card(tiny_ensemble, tmp_path):
    """bidsqc-train --detectors-only on a copy: the scores come from the cache and the
    out-of-fold passes are seeded, so the detectors and the naming come out the same."""
    folder, card = tiny_ensemble
    copy = tmp_path / "ensemble"
    shutil.copytree(folder, copy)
    labels = folder.parent / "labels.tsv"
    again = add_detectors(copy, read_labels(labels), folder.parent / "cache", seed=1, n_clean_variants=0)
    assert again["detectors"] == card["detectors"] and again["naming"] == card["naming"]
    assert read_card(copy)["naming"] == card["naming"]


def test_naming_refuses_a_card_whose_moves_this_version_cannot_redraw(tiny_ensemble, tmp_path):
    """The naming refit rebuilds the training volumes; a card whose --registration-jitter moves
    came from other ranges would get other volumes, so it fails clearly instead."""
    folder, card = tiny_ensemble
    copy = tmp_path / "ensemble"
    shutil.copytree(folder, copy)
    card = read_card(copy)
    card["training"]["registration_jitter"] = {"p": 0.8, **SPATIAL_RANGES}
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="registration-jitter moves drawn from"):
        fit_naming(copy, [], tmp_path / "cache", [], {})


def test_application_loads_and_runs_the_trained_ensemble(tiny_ensemble, stripped_t1w_2mm, tmp_path):
    from bidsqc.workflows.anatomical import init_t1w_qc_wf

    folder, card = tiny_ensemble
    ensemble = Ensemble.load(folder)
    result = ensemble.predict(np.zeros((2,) + TINY_GRID, np.float32), mc_samples=3)
    assert result.p_bad.shape == (2,) and np.all((result.p_bad >= 0) & (result.p_bad <= 1))
    assert set(result.p_artifacts) == set(card["artifacts"])
    # MC dropout is seeded per volume: the same scan gets the same rating in any batch,
    # the passes still differ from each other, and seed=None draws fresh masks
    x = np.random.default_rng(0).normal(size=(3,) + TINY_GRID).astype(np.float32)
    first, again = ensemble.predict(x, mc_samples=4), ensemble.predict(x[1:2], mc_samples=4)
    assert first.p_bad[1] == pytest.approx(again.p_bad[0], abs=1e-6)
    assert np.all(first.p_bad_std > 0)
    unseeded = [ensemble.predict(x[:1], mc_samples=4, seed=None).p_bad[0] for _ in range(3)]
    assert len(set(np.round(unseeded, 7))) > 1
    wf = init_t1w_qc_wf(folder, template="MNI152NLin6Asym", mc_samples=2, name="embedded")
    wf.base_dir = str(tmp_path)
    wf.inputs.inputnode.in_file = str(stripped_t1w_2mm)
    graph = wf.run(plugin="Linear")
    nodes = {n.name: n for n in graph.nodes()}
    info = nodes["predict"].result.outputs.info
    assert not info.get("error"), info.get("error")
    assert 0 <= info["p_bad"] <= 1 and info["qc"] in ("pass", "fail", "uncertain")
    assert info["model_id"] == card["model_id"]
    assert nib.load(nodes["normalize"].result.outputs.out_file).shape == TINY_GRID
    # the detectors scored the scan on its own grid and the card's calibration rated it
    assert set(info["detector_scores"]) == set(FEATURES)
    assert set(info["p_detectors"]) == set(DETECTORS) and info["p_bad"] >= info["p_bad_network"]
    # and the card's naming named the artifact from the heads and the native scores
    assert info["likely_artifact"] == ensemble.name_artifact(info["p_artifacts"], info["detector_scores"])[0]


def test_excluded_artifacts_are_left_out_and_the_rest_keep_their_cache_keys(tiny_ensemble):
    folder, card = tiny_ensemble
    ensemble = Ensemble.load(folder)
    labels = read_labels(folder.parent / "labels.tsv")
    args = (labels, folder.parent / "cache", "MNI152NLin6Asym", TINY_GRID, ensemble.grid_affine, ensemble.mask)
    full, _ = build_dataset(*args, n_clean_variants=0, seed=1, nprocs=1)
    kept, _ = build_dataset(*args, n_clean_variants=0, seed=1, nprocs=1, skip_artifacts=("spike", "ghosting"))
    assert len(full) == 22 and len(kept) == 18
    assert {r["artifact"] for r in kept} == {r["artifact"] for r in full} - {"spike", "ghosting"}
    assert {r["key"] for r in kept} < {r["key"] for r in full}  # all cached: nothing rebuilt


def test_train_cli_rejects_an_unknown_excluded_artifact(tmp_path, capsys):
    from bidsqc.cli.train import main

    labels = tmp_path / "labels.tsv"
    labels.write_text("source_file\trating\nx.nii.gz\tgood\n")
    assert main(["--labels", str(labels), "--out", str(tmp_path / "out"), "--exclude-artifacts", "spikes"]) == 2
    assert "unknown artifact type(s) spikes" in capsys.readouterr().err


def test_a_card_that_does_not_match_its_models_fails_clearly(tiny_ensemble, tmp_path):
    folder, _ = tiny_ensemble
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    card = json.loads((broken / "model_card.json").read_text())
    card["input"]["shape"] = [64, 76, 64]
    (broken / "model_card.json").write_text(json.dumps(card))
    nib.save(nib.Nifti1Image(np.ones((64, 76, 64), np.uint8), np.eye(4)), broken / card["input"]["mask_file"])
    with pytest.raises(ModelCardError, match=r"model input grid \(32, 38, 32\) does not match the model card "
                                             r"grid \(64, 76, 64\)"):
        Ensemble.load(broken)
    (broken / "model_card.json").unlink()
    with pytest.raises(ModelCardError, match="no model_card.json"):
        Ensemble.load(broken)


def test_a_user_threshold_near_1_keeps_a_band_that_lets_scans_fail(tiny_ensemble, tmp_path):
    """PredictQC moves the card's band to a user threshold in log-odds, so the band stays
    inside 0..1 (a band clipped at 1 would leave no p_bad that fails)."""
    from bidsqc.interfaces.predict import PredictQC

    folder, card = tiny_ensemble
    volume = tmp_path / "grid.nii.gz"
    x = np.random.default_rng(3).normal(size=TINY_GRID).astype(np.float32)
    nib.save(nib.Nifti1Image(x, np.asarray(card["input"]["affine"])), volume)
    half = band_half_width_logit(card["decision"]["uncertain_band"])
    for threshold in (0.97, 0.03):
        info = PredictQC(in_file=str(volume), model_dir=str(folder), threshold=threshold).run().outputs.info
        assert "error" not in info, info.get("error")
        low, high = info["uncertain_band"]
        assert (low, high) == uncertain_band(threshold, half)
        assert 0 < low < threshold < high < 1
        assert info["threshold"] == threshold and info["qc"] in ("pass", "fail", "uncertain")


def test_a_card_with_a_clipped_band_gets_the_log_odds_band(tiny_ensemble, tmp_path):
    """A card written with the old +-0.15 band clipped at 1 (threshold 0.86 -> 0.71-1.0, where
    no scan could fail) is read with the log-odds band instead."""
    folder, _ = tiny_ensemble
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    card = json.loads((old / "model_card.json").read_text())
    card["decision"].update(threshold=0.86, uncertain_band=[0.71, 1.0])
    (old / "model_card.json").write_text(json.dumps(card))
    assert Ensemble.load(old).uncertain_band == uncertain_band(0.86)
    card["decision"]["uncertain_band"] = [0.7, 0.9]  # a band inside 0..1 is kept as written
    (old / "model_card.json").write_text(json.dumps(card))
    assert Ensemble.load(old).uncertain_band == (0.7, 0.9)


def test_fine_tuning_resumes_from_an_ensemble(tiny_ensemble, tmp_path):
    folder, card = tiny_ensemble
    labels = tmp_path / "ratings.tsv"
    labels.write_text("source_file\trating\tsubject\n"
                      f"{folder.parent / 'sub-01_T1w.nii.gz'}\tgood\tsub-01\n"
                      f"{folder.parent / 'sub-05_T1w.nii.gz'}\tgood\tsub-05\n")
    cache = folder.parent / "cache"  # the volumes are already cached: no rebuilding
    tuned = train_ensemble(read_labels(labels), tmp_path / "tuned", cache, folds=2, epochs=1, batch_size=4,
                           n_clean_variants=0, init_from=folder, nprocs=1, mc_samples=1, seed=1,
                           spatial_augment=True)
    assert tuned["training"]["init_from"] == str(folder)
    assert tuned["training"]["spatial_augment"] == {"p": SPATIAL_P, **SPATIAL_RANGES, "spline_order": 3}
    assert card["training"]["spatial_augment"] is None
    assert tuned["input"]["shape"] == card["input"]["shape"]
    assert tuned["model_id"] != card["model_id"]


def test_a_card_from_other_presmoothing_fails_clearly(tiny_ensemble, tmp_path):
    folder, _ = tiny_ensemble
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    card = json.loads((other / "model_card.json").read_text())  # a copy: the fixture's card stays intact
    assert card["input"]["presmooth_fwhm_mm"] == PRESMOOTH_FWHM_MM
    for value, message in ((2.5, "smoothed to 2.5 mm FWHM"), (None, "smoothed to the grid spacing")):
        card["input"]["presmooth_fwhm_mm"] = value
        if value is None:
            del card["input"]["presmooth_fwhm_mm"]
        (other / "model_card.json").write_text(json.dumps(card))
        with pytest.raises(ModelCardError, match=message):
            Ensemble.load(other)


class _AlwaysFill:
    """A stand-in random generator that takes every augmentation branch at its strongest."""

    def random(self):
        return 0.0

    def uniform(self, low, high):
        return high

    def integers(self, n):
        return 0


@pytest.mark.parametrize("layered_scalp", [False, True])
def test_background_tissue_is_added_without_erasing_ghosts(layered_scalp):
    """The skull augmentation adds tissue to the background: a faint ghost there stays
    brighter than the rest of the background, even under the brightest tissue."""
    shape = (16, 20, 16)
    mask = np.zeros(shape, bool)
    mask[2:14, 2:18, 2:14] = True
    volume = np.zeros(shape, np.float32)
    volume[5:11, 6:14, 5:8] = 0.5  # grey matter
    volume[5:11, 6:14, 8:11] = 0.9  # white matter
    grey, white = volume == 0.5, volume == 0.9
    background = mask & (volume == 0)
    ghost = background.copy()
    ghost[:, :, 8:] = False
    ghost[:, 4:, :] = False  # a band over all x, so a left-right flip keeps it in place
    rest = background & ~ghost
    ghosted = volume.copy()
    ghosted[ghost] = 0.15
    fields = np.zeros((1,) + shape, np.float32)  # uniform tissue: any contrast left comes from the ghost
    out = augment(ghosted, mask, background, _AlwaysFill(), fields, layered_scalp=layered_scalp)
    plain = zscore(ghosted, mask)
    def background_to_grey(v):  # relative to the grey-white contrast
        return (v[grey].mean() - v[rest].mean()) / (v[white].mean() - v[grey].mean())

    # the tissue went in: the background came closer to grey matter ...
    assert background_to_grey(out) < 0.5 * background_to_grey(plain)
    # ... and the ghost is still there on top of it
    assert out[ghost].mean() - out[rest].mean() > 0.1
    for seed in range(12):  # and with the drawn parameters
        out = augment(ghosted, mask, background, np.random.default_rng(seed), fields, layered_scalp=layered_scalp)
        assert out[ghost].mean() - out[rest].mean() > 0.1


def test_spatial_augmentation_moves_the_brain_only_when_asked():
    shape = (32, 38, 32)
    mask = np.zeros(shape, bool)
    mask[3:29, 3:35, 3:29] = True
    volume = np.zeros(shape, np.float32)
    volume[8:24, 10:28, 8:24] = 0.8
    fields = np.zeros((1,) + shape, np.float32)
    moved = 0
    for seed in range(20):
        plain = augment(volume, mask, None, np.random.default_rng(seed), fields)
        again = augment(volume, mask, None, np.random.default_rng(seed), fields)
        spatial = augment(volume, mask, None, np.random.default_rng(seed), fields, spatial=True)
        assert np.array_equal(plain, again)
        assert not spatial[~mask].any()  # the input mask still applies after the move
        # z-scored: the brain above 0, the background below; without --spatial-augment the
        # brain stays where it is (it is centred in x, so a left-right flip keeps it there)
        assert np.array_equal(plain > 0, volume > 0)
        moved += not np.array_equal(spatial > 0, plain > 0)
    assert 0.5 * 20 <= moved < 20 or SPATIAL_P == 1.0  # applied with probability SPATIAL_P


def test_excluding_mild_artifacts_plans_only_severe_volumes():
    scans = [{"subject": "sub-01", "source_file": "a.nii.gz"}, {"subject": "sub-02", "source_file": "b.nii.gz"}]
    jobs = plan_variants(scans, n_clean_variants=1, severities=("severe",))
    artifact_jobs = [j for j in jobs if j["label"] == 1.0]
    assert len(artifact_jobs) == 2 * len(ARTIFACTS)
    assert {j["severity"] for j in artifact_jobs} == {"severe"}
    assert len(jobs) == 2 * (2 + len(ARTIFACTS))


def test_scalp_layers_lie_like_a_head_around_the_brain():
    """The skull augmentation's layered tissue: dark CSF and skull next to the brain, bright
    scalp further out, only on background voxels, for every drawn set of parameters."""
    shape = (24, 24, 24)
    grid = np.indices(shape) - 11.5
    radius = np.sqrt((grid ** 2).sum(axis=0))
    mask = radius < 11
    background = mask & (radius > 6)  # a skull-stripped brain of radius 6 inside the mask
    distance = brain_distance(mask, background)
    assert distance[mask & ~background].max() == 0 and distance[background].min() >= 1
    fields = np.random.default_rng(0).random((2,) + shape).astype(np.float32)
    for seed in range(10):
        tissue = scalp_layers(background, distance, np.random.default_rng(seed), fields)
        assert np.all(tissue[~background] == 0)
        near, far = tissue[background & (distance <= 1.2)], tissue[background & (distance >= 4)]
        assert near.mean() < far.mean() and far.mean() > 0.25


def test_cache_keys_follow_the_parameter_ranges(monkeypatch):
    """Widening a simulator range gives new cache keys, so no stale volume is reused."""
    from bidsqc.artifacts import simulators

    clean = {"variant": "clean0", "artifact": "clean", "severity": "none", "seed": 7}
    noisy = {"variant": "noise", "artifact": "noise", "severity": "severe", "seed": 7}
    before = (_job_key(clean, "abc", "sig"), _job_key(noisy, "abc", "sig"))
    monkeypatch.setitem(simulators.CLEAN_RANGES, "noise_sigma", (0.0, 0.2))
    assert _job_key(clean, "abc", "sig") != before[0]
    assert _job_key(dict(clean, raw_scan=True), "abc", "sig") != _job_key(clean, "abc", "sig")
    assert _job_key(noisy, "abc", "sig") == before[1]
    monkeypatch.setitem(simulators.RANGES, "noise", {"sigma": {"mild": (0.1, 0.2), "severe": (0.3, 0.5)}})
    assert _job_key(noisy, "abc", "sig") != before[1]


def test_registration_jitter_moves_only_the_drawn_jobs_and_keeps_the_others_keys(shared_data):
    scans = [{"subject": f"sub-{s}", "source_file": str(shared_data / "ds002748" / f"sub-{s}_T1w.nii.gz")}
             for s in ("01", "05")]
    plain = assign_keys(plan_variants(scans, n_clean_variants=2, seed=4), "grid")
    none = assign_keys(add_moves(plan_variants(scans, n_clean_variants=2, seed=4), 0.0, seed=4), "grid")
    moved = assign_keys(add_moves(plan_variants(scans, n_clean_variants=2, seed=4), 0.8, seed=4), "grid")
    again = assign_keys(add_moves(plan_variants(scans, n_clean_variants=2, seed=4), 0.8, seed=4), "grid")
    assert [j["key"] for j in none] == [j["key"] for j in plain] and not any("move_seed" in j for j in none)
    assert [j.get("move_seed") for j in moved] == [j.get("move_seed") for j in again]
    assert not any("move_seed" in j for j in moved if j["variant"] == "original")
    share = np.mean(["move_seed" in j for j in moved if j["variant"] != "original"])
    assert 0.6 <= share < 1.0
    for job, base in zip(moved, plain):  # same artifact seeds; only the moved ones get new keys
        assert job["seed"] == base["seed"]
        assert (job["key"] != base["key"]) == ("move_seed" in job)


def test_shift_variation_shifts_only_the_drawn_jobs_and_keeps_the_others_keys(shared_data):
    """--shift-variation: a drawn share of the clean variations and artifact volumes (never a
    subject's original) carry a seeded study shift; the others keep their seeds and cache
    keys; a shifted volume is built from the shifted scan, and its manifest row's stored
    shift rebuilds the same image."""
    scans = [{"subject": f"sub-{s}", "source_file": str(shared_data / "ds002748" / f"sub-{s}_T1w.nii.gz")}
             for s in ("01", "05")]
    plain = assign_keys(plan_variants(scans, n_clean_variants=2, seed=4), "grid")
    shifted = assign_keys(plan_variants(scans, n_clean_variants=2, seed=4, shift_p=0.5), "grid")
    again = assign_keys(plan_variants(scans, n_clean_variants=2, seed=4, shift_p=0.5), "grid")
    assert [j.get("shift_seed") for j in shifted] == [j.get("shift_seed") for j in again]
    assert not any("shift_seed" in j for j in shifted if j["variant"] == "original")
    share = np.mean(["shift_seed" in j for j in shifted if j["variant"] != "original"])
    assert 0.25 <= share <= 0.75
    for job, base in zip(shifted, plain):
        assert job["seed"] == base["seed"]
        assert (job["key"] != base["key"]) == ("shift_seed" in job)
    job = next(j for j in shifted if "shift_seed" in j)
    study = job_shift(job, (1.0, 1.0, 1.0))
    assert study and study == job_shift(dict(job), (1.0, 1.0, 1.0))
    built, _ = native_image(dict(job))
    assert np.array_equal(np.asarray(built.dataobj), np.asarray(native_image(dict(job))[0].dataobj))
    row = {k: v for k, v in dict(job, shift=json.dumps(study)).items() if k != "shift_seed"}
    assert job_shift(row, None) == study
    assert np.array_equal(np.asarray(native_image(row)[0].dataobj), np.asarray(built.dataobj))


def test_a_card_trained_with_other_shift_ranges_is_refused():
    from bidsqc.training.calibrate import training_shift_p

    assert training_shift_p({}) == 0.0
    card = {"shift_variation": json.loads(json.dumps({"p": 0.5, "ranges": SHIFT_RANGES}))}
    assert training_shift_p(card) == 0.5
    card["shift_variation"]["ranges"]["atrophy"] = {"width_mm": [0.5, 3.0]}
    with pytest.raises(ModelCardError, match="shift-variation"):
        training_shift_p(card)


def test_the_naming_mild_volumes_leave_the_planned_volumes_as_they_were(shared_data):
    """The mild volumes the naming is also fit on come from their own seed stream: the
    detector calibration's volumes and the training volumes (moves included) keep their
    seeds and cache keys, so neither cache is rebuilt; a user-rated scan gets none."""
    scans = [{"subject": f"sub-{s}", "source_file": str(shared_data / "ds002748" / f"sub-{s}_T1w.nii.gz")}
             for s in ("01", "05")]
    rated = {"subject": "sub-07", "source_file": str(shared_data / "ds002748" / "sub-07_T1w.nii.gz"),
             "label": "bad", "artifact": "motion"}
    mild = naming_mild_jobs(scans + [rated], seed=3)
    assert [(j["subject"], j["artifact"]) for j in mild] == [(s["subject"], a) for s in scans for a in ARTIFACTS]
    assert {j["severity"] for j in mild} == {"mild"} and len({j["variant"] for j in mild}) == len(ARTIFACTS)
    native = native_plan(scans, seed=3, n_clean_variants=1)
    before = assign_keys(plan_variants(scans, n_clean_variants=1, severities=("severe",), seed=3,
                                       raw_scan_variation=True), "native")
    assert [j["key"] for j in native[:len(before)]] == [j["key"] for j in before]
    added = native[len(before):]
    assert [j["artifact"] for j in added if j["severity"] != "mild"] == ["anisotropic"] * 2 + ["missing_coverage"] * 2
    zero_filled_mild = [j["seed"] for j in added if j["severity"] == "mild" and not j.get("crop")]
    assert zero_filled_mild == [j["seed"] for j in mild[:2 * len(ARTIFACTS)]]
    assert not {j["seed"] for j in mild} & {j["seed"] for j in before}
    plan = plan_variants(scans, n_clean_variants=1, severities=("severe",), seed=3)
    moved = assign_keys(add_moves([dict(j) for j in plan], 0.8, seed=3), "grid")
    with_mild = assign_keys(add_moves([dict(j) for j in plan] + naming_mild_jobs(scans, seed=3), 0.8, seed=3), "grid")
    assert [j["key"] for j in with_mild[:len(moved)]] == [j["key"] for j in moved]


def test_the_naming_cut_volumes_crop_the_array_from_their_own_seeds(shared_data):
    """Missing coverage as a field of view that ends in the head: a mild and a severe per
    good scan, drawn from their own seed stream (no other volume's seed or key moves), cached
    apart from the zero-filled form of the same draw, and cut off the array: the image is
    shorter along the drawn axis and every kept voxel keeps its world position."""
    scans = [{"subject": f"sub-{s}", "source_file": str(shared_data / "ds002748" / f"sub-{s}_T1w.nii.gz")}
             for s in ("01", "05")]
    rated = {"subject": "sub-07", "source_file": str(shared_data / "ds002748" / "sub-07_T1w.nii.gz"),
             "label": "bad", "artifact": "motion"}
    cut = naming_crop_jobs(scans + [rated], seed=3)
    planned = [(s["subject"], severity) for s in scans for severity in ("mild", "severe")]
    assert [(j["subject"], j["severity"]) for j in cut] == planned
    assert all(j["artifact"] == "missing_coverage" and j["crop"] for j in cut)
    assert naming_jobs(scans, seed=3) == naming_mild_jobs(scans, seed=3) + cut
    assert naming_jobs(scans, seed=3, artifacts=("motion",)) == naming_mild_jobs(scans, seed=3, artifacts=("motion",))
    plan = plan_variants(scans, n_clean_variants=1, severities=("severe",), seed=3)
    assert not {j["seed"] for j in cut} & {j["seed"] for j in plan + naming_mild_jobs(scans, seed=3)}
    zeroed = {k: v for k, v in cut[1].items() if k != "crop"}
    assert _job_key(cut[1], "abc", "sig") != _job_key(zeroed, "abc", "sig")
    whole, _ = native_image(dict(zeroed, artifact="clean", seed=None))  # the scan as it is
    cropped, params = native_image(cut[1])
    filled, same = native_image(zeroed)
    assert params == dict(same, crop=True)
    axis = params["axis"]
    assert cropped.shape[axis] < whole.shape[axis] == filled.shape[axis]
    data = np.asarray(cropped.dataobj)
    assert np.take(data, 0 if params["side"] == "low" else -1, axis=axis).any()  # the head runs to the cut edge
    corner = np.linalg.inv(whole.affine) @ cropped.affine @ np.array([0, 0, 0, 1.0])
    kept = [slice(None)] * 3
    kept[axis] = slice(int(round(corner[axis])), int(round(corner[axis])) + cropped.shape[axis])
    assert np.allclose(np.delete(corner[:3], axis), 0)
    assert np.array_equal(data, np.asarray(filled.dataobj)[tuple(kept)])


def test_moved_rows_get_their_subjects_background_moved_with_them():
    shape = (32, 38, 32)
    mask = np.zeros(shape, bool)
    mask[2:30, 2:36, 2:30] = True
    background = mask.copy()
    background[8:24, 10:28, 8:24] = False  # the brain
    backgrounds = {"sub-1": (background, None)}
    rows = [{"subject": "sub-1", "move_seed": ""}, {"subject": "sub-1", "move_seed": "7"}]
    keys = moved_backgrounds(rows, backgrounds, mask)
    assert keys[0] == "sub-1" and keys[1] == ("sub-1", 7)
    matrix, shift = jitter_move(7)
    brain = spatial_transform((~background & mask).astype(np.float32), matrix, shift, order=0) > 0.5
    moved = backgrounds[keys[1]][0]
    assert not (moved & brain).any() and not moved[~mask].any()
    assert (moved != background).sum() > 100  # it did move


def test_the_threshold_keeps_specificity_first_even_where_the_target_is_out_of_reach():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)]
    separable = np.r_[rng.uniform(0.0, 0.4, 200), rng.uniform(0.6, 1.0, 200)]
    threshold, reached = choose_threshold(y, separable)
    assert reached and threshold == 0.4  # all of 0.40-0.60 are perfect (clean up to 0.399): the lowest is kept
    # clean scans spread up to 1: no threshold up to 0.90 keeps 95 % of them below it
    overlapping = np.r_[rng.uniform(0.0, 1.0, 200), rng.uniform(0.5, 1.0, 200)]
    threshold, reached = choose_threshold(y, overlapping)
    assert not reached and threshold == 0.9  # the highest specificity on the grid, not 0.5
    assert np.mean(overlapping[:200] < threshold) > np.mean(overlapping[:200] < 0.5)


def test_train_cli_rejects_a_registration_jitter_outside_0_to_1(tmp_path, capsys):
    from bidsqc.cli.train import main

    labels = tmp_path / "labels.tsv"
    labels.write_text("source_file\trating\n")
    assert main(["--labels", str(labels), "--out", str(tmp_path / "out"), "--registration-jitter", "1.5"]) == 2
    assert "--registration-jitter must be between 0 and 1" in capsys.readouterr().err


def test_the_shipped_card_was_trained_by_the_documented_command():
    """scripts/train_shipped_ensemble.sh is the one command that reproduces the shipped
    ensemble: the options it passes are those the shipped card records, and the card's
    registration moves are this version's JITTER_RANGES, so a naming refit (--detectors-only)
    rebuilds the volumes the ensemble was trained on."""
    script = (Path(__file__).resolve().parents[2] / "scripts" / "train_shipped_ensemble.sh").read_text()
    command = script[script.rindex("python -m bidsqc.cli.train"):].replace("\\\n", " ").split("\n")[0]
    words = [w for w in shlex.split(command)[3:] if w != "$@"]
    args = get_train_parser().parse_args(words)
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    training, architecture = card["training"], card["architecture"]
    assert (training["folds"], training["epochs"], training["batch_size"]) == (args.folds, args.epochs, args.batch_size)
    assert training["learning_rate"] == args.learning_rate and training["mixup_alpha"] == args.mixup_alpha
    assert training["seed"] == args.seed and training["n_clean_variants"] == args.clean_variants
    assert training["exclude_mild"] == args.exclude_mild
    assert (architecture["dropout"], architecture["dense_dropout"]) == (args.dropout, args.dense_dropout)
    assert card["mc_samples"] == args.mc_samples
    assert training["registration_jitter"] == {"p": args.registration_jitter, **JITTER_RANGES}
