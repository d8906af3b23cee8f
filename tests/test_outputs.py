"""BIDS-Derivatives helpers: entity parsing, rows, atomic writes, group aggregation."""

import json
import os

import pytest

from bidsqc import outputs


def test_entities_and_paths(tmp_path):
    src = "sub-02/ses-1/anat/sub-02_ses-1_acq-mprage_run-2_T1w.nii.gz"
    assert outputs.parse_entities(src) == {"sub": "02", "ses": "1", "acq": "mprage", "run": "2"}
    paths = outputs.derivative_paths(tmp_path, src, "MNI152NLin6Asym", "2p5")
    anat = tmp_path / "sub-02" / "ses-1" / "anat"
    assert paths["json"] == anat / "sub-02_ses-1_acq-mprage_run-2_desc-qc_T1w.json"
    assert paths["preproc"].name == "sub-02_ses-1_acq-mprage_run-2_space-MNI152NLin6Asym_res-2p5_desc-preproc_T1w.nii.gz"
    assert paths["xfm"].name == "sub-02_ses-1_acq-mprage_run-2_from-T1w_to-MNI152NLin6Asym_mode-image_xfm.txt"


def test_error_row_has_every_column():
    row = outputs.qc_row({"source_file": "sub-04/anat/sub-04_T1w.nii.gz", "qc": "error",
                          "error": "conform: all voxels are zero"}, ["motion"])
    assert list(row)[:8] == outputs.FIRST_COLUMNS and list(row)[-5:] == outputs.LAST_COLUMNS
    assert row["p_motion"] == "n/a" and row["session_id"] == "n/a" and row["qc"] == "error"
    assert row["reason"] == "n/a" and row["spike_score"] == "n/a"


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "sub-01_desc-qc_T1w.tsv"
    outputs.atomic_write_text(target, "old\n")

    def broken_replace(src, dst):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        outputs.atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_group_outputs_collect_every_subject(tmp_path):
    for sub, qc in (("01", "pass"), ("02", "fail"), ("03", "error")):
        record = {"source_file": f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz", "qc": qc, "p_bad": 0.9 if qc == "fail"
                  else 0.1, "p_artifacts": {"motion": 0.5}}
        path = outputs.derivative_paths(tmp_path, record["source_file"], "tpl", "2")["json"]
        outputs.atomic_write_text(path, json.dumps(record))
        outputs.write_subject_table(tmp_path, sub)
    rows, excluded = outputs.write_group_outputs(tmp_path)
    assert [r["qc"] for r in rows] == ["pass", "fail", "error"]
    assert excluded == ["sub-02/anat/sub-02_T1w.nii.gz"]
    assert (tmp_path / "group_desc-qc_exclude.txt").read_text() == "sub-02/anat/sub-02_T1w.nii.gz\n"
