"""Dataset-relative verdicts (bidsqc.model.relative): within one acquisition a scan that
stands out fails and the others pass, whatever their participant verdicts; an acquisition
below the minimum keeps the participant verdicts and says so."""

import nibabel as nib
import numpy as np
import pytest
from conftest import block_mean

from bidsqc.artifacts.shift import contrast, field_strength
from bidsqc.artifacts.simulators import noise
from bidsqc.model.relative import MIN_ACQUISITION_SCANS, acquisition_key, relative_verdicts
from bidsqc.scores import SCORE_COLUMNS, scores


@pytest.fixture(scope="module")
def shifted_rows(shared_data, tmp_path_factory):
    """20 clean scans of a study unlike the training one, as the group table has them: five
    ds002748 subjects at 2 mm, each with 1.5 T noise and another contrast drawn four ways, and
    their real detector scores; every participant verdict `uncertain` with a high network
    p_bad, as on a new study. Plus the same scan with severe noise (the planted outlier)."""
    folder = tmp_path_factory.mktemp("relative")
    rng = np.random.default_rng(5)
    rows, images = [], []
    for sub in ("01", "05", "07", "08", "09"):
        img = nib.load(block_mean(shared_data / "ds002748" / f"sub-{sub}_T1w.nii.gz", folder / f"{sub}.nii.gz"))
        for k in range(4):
            shifted = contrast(img, gm_ratio=float(rng.uniform(0.88, 1.1)), csf_ratio=float(rng.uniform(0.6, 1.6)))
            shifted = field_strength(shifted, sigma=float(rng.uniform(0.03, 0.05)), seed=int(rng.integers(1000)))
            images.append(shifted)
            rows.append(_row(f"sub-{sub}/anat/sub-{sub}_run-{k + 1}_T1w.nii.gz", shifted, rng))
    bad = nib.Nifti1Image(noise(np.asarray(images[0].dataobj, np.float32), 0.2, seed=1), images[0].affine)
    return rows, _row("sub-99/anat/sub-99_T1w.nii.gz", bad, rng)


def _row(source_file, img, rng):
    values = scores(np.asarray(img.dataobj, np.float32), img.header.get_zooms()[:3],
                    only=list(SCORE_COLUMNS))
    row = {"source_file": source_file, "acq_id": "n/a", "qc": "uncertain", "voxel_size_mm": "2.00x2.00x2.00",
           "manufacturer": "Siemens", "model_name": "Vision", "field_strength": "1.5",
           "p_bad_network": round(float(rng.uniform(0.82, 0.95)), 4)}
    row.update({column: values[name] for name, column in SCORE_COLUMNS.items()})
    return row


def test_a_planted_outlier_stands_out_from_twenty_shifted_clean_scans(shifted_rows):
    clean, outlier = shifted_rows
    rows = relative_verdicts([dict(r) for r in clean] + [dict(outlier)])
    assert rows[-1]["qc_dataset"] == "fail"
    assert "noise_score stands out from the 21 scans" in rows[-1]["qc_dataset_reason"]
    assert all(r["qc_dataset"] == "pass" for r in rows[:-1])
    assert all(r["n_acquisition"] == 21 for r in rows)
    # a scan the participant level passes is never failed for standing out: it stays a pass, and says why
    rows = relative_verdicts([dict(r) for r in clean] + [dict(outlier, qc="pass")])
    assert rows[-1]["qc_dataset"] == "pass" and "stands out" in rows[-1]["qc_dataset_reason"]


def test_twenty_shifted_clean_scans_alone_all_pass(shifted_rows):
    clean, _ = shifted_rows
    rows = relative_verdicts([dict(r) for r in clean])
    assert [r["qc_dataset"] for r in rows] == ["pass"] * 20
    assert all(float(r["z_max"]) < 3.5 for r in rows)
    assert all(r["qc"] == "uncertain" for r in rows)  # the participant verdict is kept as it was


def test_an_acquisition_below_the_minimum_keeps_the_participant_verdicts(shifted_rows):
    clean, outlier = shifted_rows
    small = [dict(r) for r in clean[:MIN_ACQUISITION_SCANS - 2]] + [dict(outlier, qc="fail")]
    rows = relative_verdicts(small)
    assert [r["qc_dataset"] for r in rows] == [r["qc"] for r in small]
    assert all("fewer than the 10" in r["qc_dataset_reason"] for r in rows)
    assert all(r["z_max"] == "n/a" for r in rows)


def test_acquisitions_are_told_apart_and_errors_stay_errors(shifted_rows):
    clean, _ = shifted_rows
    other = [dict(r, manufacturer="GE", model_name="Signa", field_strength="3") for r in clean[:12]]
    error = {"source_file": "sub-98/anat/sub-98_T1w.nii.gz", "qc": "error", "p_bad_network": "n/a"}
    rows = relative_verdicts([dict(r) for r in clean] + other + [error])
    assert len({r["acquisition"] for r in rows[:-1]}) == 2
    assert {r["n_acquisition"] for r in rows[:20]} == {20} and {r["n_acquisition"] for r in rows[20:32]} == {12}
    assert rows[-1]["qc_dataset"] == "error"
    assert acquisition_key({"acq_id": "mprage", "voxel_size_mm": "1.0000x1.0000x1.2000"}) == \
        "acq-mprage|n/a|n/a|n/a|1.0x1.0x1.2"
