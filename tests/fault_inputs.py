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


def write_fault_dataset(bids, shared_data):
    """A BIDS dataset of a good scan (sub-good, a 2 mm copy of a real one) and ``add_fault_inputs``."""
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "faults", "BIDSVersion": "1.9.0"}))
    good = bids / "sub-good" / "anat" / "sub-good_T1w.nii.gz"
    good.parent.mkdir(parents=True)
    block_mean(shared_data / "ds002748" / "sub-01_T1w.nii.gz", good)
    add_fault_inputs(bids, good)
    return bids
