"""What the model card learns on training scans (bidsqc.training.calibrate and the cached
scores of bidsqc.training.dataset): a detector's calibration sits between clean and artifact
scores; the cached native scores are reused, recomputed when their definition changed, and
given the source scan's registration."""

import nibabel as nib
import numpy as np
import pytest

from bidsqc.scores import FEATURES, brain_extent, brain_voxels, feature_column, scores, slice_score, uncovered_score
from bidsqc.training.calibrate import calibrate


@pytest.fixture(scope="module")
def stripped(stripped_t1w_2mm):
    img = nib.load(stripped_t1w_2mm)
    return np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]


def test_calibration_sits_between_clean_and_artifact_scores():
    rng = np.random.default_rng(0)
    clean, bad = rng.uniform(1.0, 1.6, 200), rng.uniform(3.5, 5.0, 60)
    cal = calibrate(clean, bad)
    assert np.quantile(clean, 0.98) < cal["low"] < cal["threshold"] < cal["high"] <= np.quantile(bad, 0.06)
    assert cal["sensitivity"] == 1.0 and cal["specificity"] == 1.0
    # overlapping scores: the threshold with the best balanced accuracy, inside the zone
    cal = calibrate(rng.uniform(0, 2, 200), rng.uniform(1, 3, 200))
    assert cal["low"] < cal["threshold"] < cal["high"] and 1.0 <= cal["threshold"] <= 2.0
    assert (cal["sensitivity"] + cal["specificity"]) / 2 == pytest.approx(0.75, abs=0.03)


def test_a_cache_from_an_older_version_gets_only_its_missing_scores(stripped_t1w_2mm, stripped, tmp_path):
    """detectors.tsv written before some scores existed: the scores it holds are kept (here a
    marker value no detector gives) and only the missing ones are computed. A score cached
    under an older definition (the spike score before its taper) is computed again."""
    from bidsqc.training.dataset import detector_table

    (tmp_path / "detectors.tsv").write_text("key\tspike\tghosting\nscan\t9.99\t0.5\n")
    job = {"key": "scan", "subject": "sub-01", "source_file": str(stripped_t1w_2mm), "variant": "original",
           "artifact": "none", "severity": "none", "label": 0.0, "seed": None}
    table = detector_table([job], tmp_path, nprocs=1)
    data, zooms = stripped
    assert table["scan"]["ghosting"] == 0.5
    fresh = scores(data, zooms, only=["spike", "thick_slices", "bias"])
    assert list(fresh) == ["spike", "thick_slices", "bias"]
    assert table["scan"]["spike"] == fresh["spike"] != 9.99
    assert table["scan"]["thick_slices"] == fresh["thick_slices"] and table["scan"]["bias"] == fresh["bias"]
    assert set(table["scan"]) == set(FEATURES)
    header, row = (tmp_path / "detectors.tsv").read_text().splitlines()
    columns = [feature_column(f) for f in FEATURES]
    assert columns[0] == "spike_v3" and columns[3] == "truncation_v3"
    assert header.split("\t") == ["key"] + columns
    assert row.startswith("scan\t%s\t0.5\t" % fresh["spike"])
    # a second call scores nothing again
    assert detector_table([job], tmp_path, nprocs=1) == table
    # a cache folder that does not exist yet (bidsqc-train --detectors-only on a fresh cache) is made
    fresh_cache = tmp_path / "new" / "cache"
    assert detector_table([job], fresh_cache, nprocs=1)["scan"]["thick_slices"] == fresh["thick_slices"]
    assert (fresh_cache / "detectors.tsv").is_file()


def test_the_registered_scores_of_a_cache_use_the_source_scans_registration(stripped_t1w_2mm, nlin6, tmp_path):
    """detector_table gives the slice and uncovered scores the template brain as the source
    scan's registration maps it (registered once, kept in registrations.json): a cached
    transform is used as it is, and a simulated version of the scan shares it."""
    import json

    from bidsqc.model.card import file_checksum
    from bidsqc.training.dataset import detector_table, registration_table
    from bidsqc.preprocessing.conform import conform, load_image

    job = {"key": "scan", "subject": "sub-01", "source_file": str(stripped_t1w_2mm), "variant": "original",
           "artifact": "none", "severity": "none", "label": 0.0, "seed": None}
    moves = registration_table([str(stripped_t1w_2mm)], tmp_path, "MNI152NLin6Asym", nprocs=1)
    cached = json.loads((tmp_path / "registrations.json").read_text())
    assert list(cached) == [f"MNI152NLin6Asym:{file_checksum(stripped_t1w_2mm)}"]
    img, _ = conform(load_image(stripped_t1w_2mm))
    data, zooms = np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3]
    brain = brain_voxels(img.affine, moves[str(stripped_t1w_2mm)], nlin6.mask)
    table = detector_table([job], tmp_path, nprocs=1)
    assert table["scan"]["uncovered"] == uncovered_score(data, brain) < 0.05
    assert table["scan"]["bad_slices"] == slice_score(data, zooms, extent=brain_extent(brain))
    # a transform in the cache is taken as it is: one that moves the brain 200 mm up leaves it all uncovered
    key = next(iter(cached))
    moved = np.asarray(cached[key])
    moved[2, 3] += 200.0
    (tmp_path / "registrations.json").write_text(json.dumps({key: moved.tolist()}))
    (tmp_path / "detectors.tsv").unlink()
    assert detector_table([job], tmp_path, nprocs=1)["scan"]["uncovered"] == 1.0
    # a missing-coverage version of the scan is scored with its source's registration
    cut = dict(job, key="cut", variant="missing_coverage", artifact="missing_coverage", severity="severe",
               params=json.dumps({"axis": 2, "side": "high", "fraction": 0.3}))
    (tmp_path / "registrations.json").write_text(json.dumps(cached))
    (tmp_path / "detectors.tsv").unlink()
    assert detector_table([job, cut], tmp_path, nprocs=1)["cut"]["uncovered"] > table["scan"]["uncovered"] + 0.1
