"""Broken and unusual T1w inputs, written into a BIDS dataset with one good scan and one file
whose label pybids leaves out: shared by tests/test_faults.py and benchmarks/bench_faults.py."""

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
from conftest import block_mean


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


def add_odd_label(bids, good):
    """The scan ``good`` (a path under the BIDS folder ``bids``) copied beside itself under a
    label that is not alphanumeric (``acq-a b``, which pybids leaves out); returns its path
    relative to ``bids``."""
    odd = good.parent / good.name.replace("_T1w", "_acq-a b_T1w")
    shutil.copyfile(good, odd)
    return str(odd.relative_to(bids))


def add_fault_inputs(bids, good):
    """Every CASES input as sub-<label>/anat/sub-<label>_T1w.nii.gz under the BIDS folder
    ``bids``, and ``add_odd_label(bids, good)``; returns the CASES files' paths relative to
    ``bids`` and the odd file's."""
    rng = np.random.default_rng(0)
    files = []
    for label, (writer, _) in CASES.items():
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        if label == "loop":
            os.symlink(path, path)
        elif label == "dangling":
            os.symlink(bids / "nowhere.nii.gz", path)
        else:
            writer(path, rng)
        files.append(str(path.relative_to(bids)))
    return files, add_odd_label(bids, good)


def _stored(base, path, dtype, slope=None):
    """``base`` (a nibabel image) stored as ``dtype`` (integers scaled to the type's range), with
    an explicit ``scl_slope`` where given."""
    data = np.asarray(base.dataobj, np.float64)
    if np.dtype(dtype).kind in "iu":
        data = np.round(data / data.max() * (np.iinfo(dtype).max if slope is None else 1 / slope * 0.9 * 32767))
    img = nib.Nifti1Image(data.astype(dtype), base.affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0)
    nib.save(img, path)


def _oblique(base, path, degrees=15.0):
    angle = np.deg2rad(degrees)
    turn = np.eye(4)
    turn[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    nib.save(nib.Nifti1Image(np.asarray(base.dataobj), turn @ base.affine), path)


def _thick(base, path, mm=6.0):
    """Slices of ``mm`` along the last axis: block means of a 2 mm scan, the affine stretched."""
    data = np.asarray(base.dataobj, np.float32)
    f = int(round(mm / base.header.get_zooms()[2]))
    n = data.shape[2] // f * f
    thick = data[..., :n].reshape(data.shape[0], data.shape[1], n // f, f).mean(axis=3)
    nib.save(nib.Nifti1Image(thick, base.affine @ np.diag([1.0, 1.0, f, 1.0])), path)


def _t2_like(base, path):
    """Inverted contrast inside the head (CSF bright, white matter dark), as a T2w labelled T1w."""
    data = np.asarray(base.dataobj, np.float32)
    head = data > 0.1 * data.max()
    nib.save(nib.Nifti1Image(np.where(head, data.max() - data + 0.1 * data.max(), 0).astype(np.float32),
                             base.affine), path)


#: (label, writer(base, path), check(row, record) -> message or None): unusual but readable inputs,
#: rated; ``base`` is the good scan (a 2 mm real head)
RATED = {
    "thick": (_thick, lambda row, rec: None if any("2D (thick-slice)" in w for w in rec.get("warnings", []))
              else "no thick-slice warning"),
    "oblique": (_oblique, lambda row, rec: None if rec.get("oblique") is True else "not recorded as oblique"),
    "int8": (lambda b, p: _stored(b, p, np.int8), None),
    "uint8": (lambda b, p: _stored(b, p, np.uint8), None),
    "float64": (lambda b, p: _stored(b, p, np.float64), None),
    "slope": (lambda b, p: _stored(b, p, np.int16, slope=0.25), None),
    "plain": (lambda b, p: nib.save(b, p.with_suffix("")), None),  # sub-plain_T1w.nii
    "eight": (lambda b, p: nib.save(nib.Nifti1Image(np.asarray(b.dataobj)[:, :, 40:48], b.affine), p),
              lambda row, rec: None if row["qc"] != "pass" else "8 slices passed"),
    "t2like": (_t2_like, lambda row, rec: None if row["qc"] != "pass" else "a T2w-like contrast passed"),
    "noise": (lambda b, p: nib.save(nib.Nifti1Image(np.random.default_rng(3).random((64, 64, 64)).astype(
        np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), p), lambda row, rec: None if row["qc"] != "pass"
        else "pure noise passed"),
}


def add_rated_inputs(bids, good):
    """Every RATED input as sub-<label>/anat/sub-<label>_T1w.nii[.gz], made from the scan at ``good``."""
    base = nib.load(good)
    for label, (writer, _) in RATED.items():
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        writer(base, path)


def write_fault_dataset(bids, shared_data):
    """A BIDS dataset of a good scan (sub-good, a 2 mm copy of a real one) and ``add_fault_inputs``."""
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "faults", "BIDSVersion": "1.9.0"}))
    good = bids / "sub-good" / "anat" / "sub-good_T1w.nii.gz"
    good.parent.mkdir(parents=True)
    block_mean(shared_data / "ds002748" / "sub-01_T1w.nii.gz", good)
    add_fault_inputs(bids, good)
    add_rated_inputs(bids, good)
    return bids
