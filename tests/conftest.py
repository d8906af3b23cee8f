"""Shared fixtures: the real scans in ../shared/data and an offline TemplateFlow home.

TEMPLATEFLOW_HOME is pointed at a writable copy of ../shared/templateflow before
anything imports templateflow (it reads the variable at import time).
"""

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_TEMPLATEFLOW = SHARED / "templateflow"

_TF_HOME = Path(tempfile.mkdtemp(prefix="bidsqc_tf_"))
if SHARED_TEMPLATEFLOW.is_dir():
    shutil.copytree(SHARED_TEMPLATEFLOW, _TF_HOME, dirs_exist_ok=True)
    for root, dirs, files in os.walk(_TF_HOME):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
os.environ["TEMPLATEFLOW_HOME"] = str(_TF_HOME)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: the slowest test files, run first: with pytest-xdist (``--dist loadfile``) each starts on a
#: worker of its own while the other files run beside it
SLOW_FIRST = ("tests/training/test_train.py", "tests/test_cli.py", "tests/test_demo.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)))


def _require(path):
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must provide ../shared (data and templateflow)")
        pytest.skip(f"{path} is absent: these tests read real scans from ../shared/data")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (skips with a clear message only where it is absent, never in CI)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def templateflow_home():
    """A writable copy of ../shared/templateflow, already set as TEMPLATEFLOW_HOME."""
    _require(SHARED_TEMPLATEFLOW)
    return _TF_HOME


@pytest.fixture(scope="session")
def nlin6(templateflow_home):
    """The MNI152NLin6Asym template through TemplateFlow (offline cache), not the package's copy."""
    from bidsqc.preprocessing.templates import get_template

    return get_template("MNI152NLin6Asym", allow_fallback=False, use_shipped=False)


@pytest.fixture(scope="session")
def stripped_t1w(shared_data):
    return shared_data / "ds002748" / "sub-01_T1w.nii.gz"


@pytest.fixture(scope="session")
def raw_head_t1w(shared_data):
    return shared_data / "raw" / "nichart_dcm2nii_sample_trio_mprage.nii.gz"


def block_mean(source, out, factor=2):
    """A real scan at ``factor`` times its voxel size (means of factor^3 blocks), written to
    ``out``: the same head and contrast with a fraction of the voxels, for tests of the
    machinery (caches, training, workflows) that need a real scan but not its fine detail."""
    img = nib.load(source)
    data = np.asarray(img.dataobj, np.float32)
    shape = [n // factor for n in data.shape]
    data = data[:shape[0] * factor, :shape[1] * factor, :shape[2] * factor]
    data = data.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean(axis=(1, 3, 5))
    affine = img.affine.copy()
    affine[:3, :3] *= factor
    affine[:3, 3] += img.affine[:3, :3] @ np.full(3, (factor - 1) / 2)
    nib.save(nib.Nifti1Image(data, affine), out)
    return out


@pytest.fixture(scope="session")
def stripped_t1w_2mm(stripped_t1w, tmp_path_factory):
    """ds002748 sub-01 at 2 mm (``block_mean``)."""
    return block_mean(stripped_t1w, tmp_path_factory.mktemp("scans") / "sub-01_T1w.nii.gz")


def three_subject_dataset(bids, shared_data, name="three subjects"):
    """A BIDS dataset of three ds002748 scans at 2 mm (sub-01, -05, -08 as sub-01, -02, -03)."""
    import json

    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.9.0"}))
    for label, sub in (("01", "01"), ("02", "05"), ("03", "08")):
        path = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        block_mean(shared_data / "ds002748" / f"sub-{sub}_T1w.nii.gz", path)
    return bids
