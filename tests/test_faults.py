"""Broken and unusual inputs in one BIDS dataset, rated in one participant run: each gets an
``error`` row with a message naming the file and the problem (or a ``skipped`` entry saying
why it was not rated), and the good scans of the same run are rated all the same."""

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import block_mean

from bidsqc.cli.run import main
from bidsqc.outputs import read_tsv
from bidsqc.preprocessing.conform import ConformError, conform


def _nifti(data, affine=None, dtype=None, zooms=(2.0, 2.0, 2.0)):
    affine = np.diag(list(zooms) + [1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    return img


def _head(rng, shape=(48, 56, 48)):
    """A smooth head-like blob with noise (not a real scan: for the inputs that must fail early)."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid ** 2).sum(axis=0) < 0.7
    return (inside * 800 + rng.normal(0, 20, shape)).astype(np.float32)


def _singular(path, rng):
    img = _nifti(_head(rng))
    img.header["sform_code"], img.header["qform_code"] = 1, 0
    img.header["srow_z"] = [0.0, 0.0, 0.0, 0.0]  # no third axis: a singular voxel-to-world matrix
    img.header["vox_offset"] = 352
    path.write_bytes(gzip.compress(img.header.binaryblock + b"\x00" * 4 + np.asarray(
        img.dataobj, np.float32).tobytes(order="F")))


def _absurd_header(path):
    img = _nifti(np.ones((8, 8, 8), np.int16))
    hdr = img.header.copy()
    hdr.set_data_shape((30000, 30000, 30000))
    raw = hdr.binaryblock + b"\x00" * 4 + np.ones(16, np.int16).tobytes()
    path.write_bytes(gzip.compress(raw))


#: (label, writer, expected message fragment): files under sub-<label>/anat/sub-<label>_T1w.nii.gz
CASES = {
    "empty": (lambda p, rng: p.write_bytes(b""), "cannot read image"),
    "truncated": (lambda p, rng: p.write_bytes(gzip.compress(b"\x5c\x01" + b"\x00" * 200)[:60]), "cannot read"),
    "text": (lambda p, rng: p.write_bytes(gzip.compress(b"not an image\n")), "cannot read"),
    "flat": (lambda p, rng: nib.save(_nifti(np.ones((64, 64), np.float32)), p), "2D image"),
    "nan": (lambda p, rng: nib.save(_nifti(np.where(_head(rng) > 400, np.nan, 1).astype(np.float32)), p),
            "non-finite"),
    "inf": (lambda p, rng: nib.save(_nifti(np.where(_head(rng) > 400, np.inf, 1).astype(np.float32)), p),
            "non-finite"),
    "zeros": (lambda p, rng: nib.save(_nifti(np.zeros((32, 32, 32), np.float32)), p), "all voxels are zero"),
    "absurd": (lambda p, rng: _absurd_header(p), "30000x30000x30000"),
    "singular": (_singular, "invalid affine"),
    "rgb": (lambda p, rng: nib.save(nib.Nifti1Image(
        np.zeros((16, 16, 16), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]), np.eye(4)), p), "RGB colour image"),
    "slices": (lambda p, rng: nib.save(_nifti(_head(rng, (64, 64, 4))), p), "only 4 voxels along one axis"),
    "loop": (None, "Too many levels of symbolic links"),
    "dangling": (None, "a symbolic link to a missing file"),
}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory, shared_data, templateflow_home):
    rng = np.random.default_rng(0)
    bids = tmp_path_factory.mktemp("faults") / "ds"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "faults", "BIDSVersion": "1.9.0"}))
    files = {}
    for label, (writer, _) in CASES.items():
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        if label == "loop":
            os.symlink(path, path)
        elif label == "dangling":
            os.symlink(bids / "nowhere.nii.gz", path)
        else:
            writer(path, rng)
        files[label] = path
    good = bids / "sub-good" / "anat" / "sub-good_T1w.nii.gz"
    good.parent.mkdir(parents=True)
    block_mean(shared_data / "ds002748" / "sub-01_T1w.nii.gz", good)
    # a label that is not alphanumeric: pybids leaves it out; it must be listed, not lost
    odd = bids / "sub-good" / "anat" / "sub-good_acq-a b_T1w.nii.gz"
    shutil.copyfile(good, odd)
    out = tmp_path_factory.mktemp("faults_out") / "bidsqc"
    code = main([str(bids), str(out), "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports"])
    group = main([str(bids), str(out), "group", "--no-reports"])
    return bids, out, code, group


@pytest.mark.parametrize("label", sorted(CASES))
def test_each_broken_input_is_an_error_row_that_says_what_is_wrong(fault_run, label):
    bids, out, code, _ = fault_run
    rows = read_tsv(out / f"sub-{label}" / f"sub-{label}_desc-qc_T1w.tsv")
    assert len(rows) == 1 and rows[0]["qc"] == "error"
    message = rows[0]["error"]
    assert f"sub-{label}_T1w.nii.gz" in message and CASES[label][1] in message, message
    assert "Traceback" not in message and "\n" not in message


def test_the_good_scan_of_the_same_run_is_rated_and_the_odd_name_is_listed(fault_run):
    bids, out, code, group = fault_run
    assert code == 0 and group == 0
    rows = read_tsv(out / "sub-good" / "sub-good_desc-qc_T1w.tsv")
    assert [r["qc"] in ("pass", "uncertain", "fail") for r in rows] == [True]
    skipped = read_tsv(out / "group_desc-qc_skipped.tsv")
    assert [(r["path"], "not alphanumeric" in r["reason"]) for r in skipped] == [
        ("sub-good/anat/sub-good_acq-a b_T1w.nii.gz", True)]
    assert len(read_tsv(out / "group_desc-qc_T1w.tsv")) == len(CASES) + 1
    assert not list(out.rglob("*.tmp"))


def test_the_size_limit_is_checked_before_reading_and_can_be_raised(monkeypatch):
    img = _nifti(np.random.default_rng(2).random((40, 40, 40)).astype(np.float32))
    monkeypatch.setenv("BIDSQC_MAX_VOXELS", "1000")
    with pytest.raises(ConformError, match="40x40x40 voxels .* BIDSQC_MAX_VOXELS"):
        conform(img, name="big.nii.gz")
    monkeypatch.setenv("BIDSQC_MAX_VOXELS", str(40 ** 3))
    assert conform(img, name="big.nii.gz")[0].shape == (40, 40, 40)


def test_a_4d_image_is_rated_on_its_first_volume_with_a_warning_that_helps():
    img = _nifti(np.random.default_rng(1).random((20, 20, 20, 3)).astype(np.float32))
    _, info = conform(img, name="run.nii.gz")
    assert info.n_volumes == 3 and "split the file" in info.warnings[0] and "--" not in info.warnings[0]


def test_a_read_only_output_folder_is_one_line_and_exit_2(fault_run, tmp_path, capsys):
    bids, *_ = fault_run
    if os.geteuid() == 0:  # root ignores permissions: a read-only bind mount in a private namespace
        if not shutil.which("unshare"):
            pytest.skip("needs unshare to make a read-only folder as root")
        import subprocess
        import sys

        target = tmp_path / "ro"
        target.mkdir()
        script = (f"mount --bind {target} {target} && mount -o remount,bind,ro {target} && "
                  f"{sys.executable} -m bidsqc.cli.run {bids} {target} participant --participant-label good")
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
        if "mount" in done.stderr and done.returncode not in (2,):
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()[:200]}")
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert errors == [f"bidsqc: error: output_dir {target} is not writable (Read-only file system); choose "
                          "another folder or fix its permissions"]
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o555)
        assert main([str(bids), str(target), "participant", "--participant-label", "good"]) == 2
        assert "is not writable" in capsys.readouterr().err
