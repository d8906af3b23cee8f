"""Shared fixtures: the real scans in ../shared/data and an offline TemplateFlow home.

TEMPLATEFLOW_HOME is pointed at a writable copy of ../shared/templateflow before
anything imports templateflow (it reads the variable at import time).
"""

import os
import shutil
import tempfile
from pathlib import Path

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
