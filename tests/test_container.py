"""The container image, built and run for real (scripts/test_container.sh): podman builds the
Dockerfile from a local Debian base, then the participant and group levels run on a 3-subject
dataset with a read-only image, no network and a read-only dataset. Marked ``container``
(it takes minutes and root); .ci/run runs it:

    python -m pytest -m container -n 0 tests/test_container.py
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.container
def test_the_image_builds_and_rates_a_dataset_read_only_without_network(shared_data, tmp_path):
    if os.geteuid() != 0 or not (shutil.which("podman") or shutil.which("apt-get")):
        message = "the container test needs root and podman (apt-get install podman runc debootstrap)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, BIDSQC_DATA=str(shared_data), BIDSQC_CONTAINER_WORK=str(tmp_path))
    done = subprocess.run(["bash", str(REPO / "scripts" / "test_container.sh")], env=env, capture_output=True,
                          text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "outputs checked: sub-01" in done.stdout
    assert "test_container: image bidsqc:test" in done.stdout
