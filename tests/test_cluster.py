"""bidsqc on a cluster and inside other pipelines, for real: the documented SLURM array job
(scripts/slurm_array.sh) and Nipype's SLURM plugin on a one-node SLURM cluster
(../shared/tools/start-local-slurm.sh; .ci/run starts it), and init_t1w_qc_wf inside a
parent Nipype workflow. Marked ``cluster`` (minutes, not part of the quick suite):

    python -m pytest -m cluster -n 0 tests/test_cluster.py
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import three_subject_dataset

from bidsqc.cli.run import main
from bidsqc.outputs import read_tsv

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def slurm():
    """SLURM's node is up (idle or mixed), or the test is skipped (failed under CI, where .ci/run starts it)."""
    state = ""
    if shutil.which("sinfo"):
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
    if not any(s in state for s in ("idle", "mixed", "allocated")):
        message = "no SLURM cluster is up: start one with ../shared/tools/start-local-slurm.sh (needs root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def three_subjects(tmp_path_factory, shared_data):
    return three_subject_dataset(tmp_path_factory.mktemp("cluster") / "bids", shared_data, "cluster test")


def test_the_slurm_array_script_rates_every_participant_then_the_group(slurm, three_subjects, tmp_path,
                                                                       templateflow_home):
    out = tmp_path / "out"
    env = dict(os.environ, BIDSQC=f"{sys.executable} -m bidsqc.cli.app", TMPDIR=str(tmp_path))
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--array=1-3", "--cpus-per-task=1", "--mem=3G",
         f"--output={tmp_path}/slurm-%A_%a.out", str(REPO / "scripts" / "slurm_array.sh"), str(three_subjects),
         str(out), "--mc-samples", "1", "--no-reports"], env=env, capture_output=True, text=True, timeout=900)
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("slurm-*.out")))
    assert submitted.returncode == 0, submitted.stderr + logs
    assert len(list(tmp_path.glob("slurm-*.out"))) == 3  # one task per participant
    assert main([str(three_subjects), str(out), "group", "--no-reports"]) == 0
    rows = read_tsv(out / "group_desc-qc_T1w.tsv")
    assert sorted(r["participant_id"] for r in rows) == ["sub-01", "sub-02", "sub-03"]
    assert all(r["qc"] in ("pass", "uncertain", "fail") for r in rows)
    assert not list(tmp_path.glob("bidsqc_work_*"))  # each task removed its work folder


def test_nipype_slurm_plugin_runs_the_participant_level(slurm, three_subjects, tmp_path, templateflow_home):
    out = tmp_path / "out"
    code = main([str(three_subjects), str(out), "participant", "--participant-label", "01", "--mc-samples", "1",
                 "--no-reports", "--plugin", "SLURM", "-w", str(tmp_path / "work"),
                 "--plugin-args", json.dumps({"sbatch_args": "--cpus-per-task=1 --mem=3G", "max_jobs": 4,
                                              "poll_sleep_duration": 1})])
    assert code == 0
    rows = read_tsv(out / "sub-01" / "sub-01_desc-qc_T1w.tsv")
    assert len(rows) == 1 and rows[0]["qc"] in ("pass", "uncertain", "fail")
    # the nodes ran as SLURM jobs: Nipype wrote a batch script for each
    assert list((tmp_path / "work").rglob("batchscript_*.sh"))


def test_init_t1w_qc_wf_runs_inside_a_parent_workflow(three_subjects, tmp_path, templateflow_home):
    from nipype.interfaces.utility import Function, IdentityInterface
    from nipype.pipeline import engine as pe

    from bidsqc.model.ensemble import DEFAULT_MODEL_DIR
    from bidsqc.workflows.anatomical import init_t1w_qc_wf

    def keep_if_usable(info):
        return info.get("qc") != "fail" and not info.get("error"), info.get("qc"), info.get("p_bad")

    parent = pe.Workflow(name="parent", base_dir=str(tmp_path))
    source = pe.Node(IdentityInterface(fields=["t1w"]), name="source")
    source.inputs.t1w = str(three_subjects / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    qc = init_t1w_qc_wf(DEFAULT_MODEL_DIR, mc_samples=1, name="t1w_qc")
    gate = pe.Node(Function(input_names=["info"], output_names=["usable", "qc", "p_bad"], function=keep_if_usable),
                   name="gate")
    parent.connect([(source, qc, [("t1w", "inputnode.in_file")]), (qc, gate, [("outputnode.info", "info")])])
    graph = parent.run(plugin="Linear")
    outputs = next(n for n in graph.nodes() if n.name == "gate").result.outputs
    assert outputs.qc in ("pass", "uncertain", "fail") and 0 <= outputs.p_bad <= 1
    assert outputs.usable == (outputs.qc != "fail")
