"""Faults and limits: the size limit, 4D, sub-millimetre reading, a read-only output folder, a
model folder that is not what bidsqc-train wrote, option names in messages, and (marker
``faults``) a killed run and two runs at once. The broken inputs themselves
(tests/fault_inputs.py), marker ``faults`` too, are rated in one participant run with a good
scan, which must be rated all the same."""

import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from fault_inputs import CASES, RATED, _nifti, write_fault_dataset

from bidsqc.cli.run import main
from bidsqc.outputs import read_tsv
from bidsqc.preprocessing.conform import ConformError, conform


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory, shared_data, templateflow_home):
    bids = write_fault_dataset(tmp_path_factory.mktemp("faults") / "ds", shared_data)
    out = tmp_path_factory.mktemp("faults_out") / "bidsqc"
    code = main([str(bids), str(out), "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports"])
    group = main([str(bids), str(out), "group", "--no-reports"])
    return bids, out, code, group


@pytest.mark.faults
@pytest.mark.parametrize("label", sorted(CASES))
def test_each_broken_input_is_an_error_row_that_says_what_is_wrong(fault_run, label):
    bids, out, code, _ = fault_run
    rows = read_tsv(out / f"sub-{label}" / f"sub-{label}_desc-qc_T1w.tsv")
    assert len(rows) == 1 and rows[0]["qc"] == "error"
    message = rows[0]["error"]
    assert f"sub-{label}_T1w.nii.gz" in message and CASES[label][1] in message, message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.faults
@pytest.mark.parametrize("label", sorted(RATED))
def test_each_unusual_but_readable_input_is_rated(fault_run, label):
    """Other datatypes, a slope, plain .nii, oblique, thick slices are rated (with a warning where
    due); 8 slices, a T2w-like contrast and pure noise are not passed."""
    import json

    bids, out, code, _ = fault_run
    rows = read_tsv(out / f"sub-{label}" / f"sub-{label}_desc-qc_T1w.tsv")
    assert len(rows) == 1 and rows[0]["qc"] in ("pass", "uncertain", "fail"), rows[0].get("error")
    record = json.loads(next((out / f"sub-{label}").rglob("*_desc-qc_T1w.json")).read_text())
    check = RATED[label][1]
    assert check is None or check(rows[0], record) is None, check(rows[0], record)


@pytest.mark.faults
def test_the_good_scan_of_the_same_run_is_rated_and_the_odd_name_is_listed(fault_run):
    bids, out, code, group = fault_run
    assert code == 0 and group == 0
    rows = read_tsv(out / "sub-good" / "sub-good_desc-qc_T1w.tsv")
    assert [r["qc"] in ("pass", "uncertain", "fail") for r in rows] == [True]
    skipped = read_tsv(out / "group_desc-qc_skipped.tsv")
    assert [(r["path"], "not alphanumeric" in r["reason"]) for r in skipped] == [
        ("sub-good/anat/sub-good_acq-a b_T1w.nii.gz", True)]
    assert len(read_tsv(out / "group_desc-qc_T1w.tsv")) == len(CASES) + len(RATED) + 1
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


def test_a_read_only_output_folder_is_one_line_and_exit_2(three_scans, tmp_path, capsys):
    bids = three_scans
    if os.geteuid() == 0:  # root ignores permissions: a read-only bind mount in a private namespace
        if not shutil.which("unshare"):
            pytest.skip("needs unshare to make a read-only folder as root")
        import subprocess
        import sys

        target = tmp_path / "ro"
        target.mkdir()
        script = (f"mount --bind {target} {target} && mount -o remount,bind,ro {target} && "
                  f"{sys.executable} -m bidsqc.cli.run {bids} {target} participant --participant-label 01")
        done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
        if "mount" in done.stderr and done.returncode not in (2,):
            message = f"cannot make a read-only mount here: {done.stderr.strip()[:200]}"
            if os.environ.get("CI"):  # .ci/run runs as root on a machine that allows it
                pytest.fail(message)
            pytest.skip(message)
        assert done.returncode == 2, done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        assert errors == [f"bidsqc: error: output_dir {target} is not writable (Read-only file system); choose "
                          "another folder or fix its permissions"]
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o555)
        assert main([str(bids), str(target), "participant", "--participant-label", "01"]) == 2
        assert "is not writable" in capsys.readouterr().err


def test_every_option_a_message_names_exists():
    """No message, warning or help text sends the user to an option that does not exist."""
    import ast
    import re
    from pathlib import Path

    from bidsqc.cli.parser import get_parser, get_simulate_parser, get_train_parser

    known = {o for p in (get_parser(), get_train_parser(), get_simulate_parser()) for a in p._actions
             for o in a.option_strings}
    named = {}
    for path in (Path(__file__).resolve().parent.parent / "bidsqc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for option in re.findall(r"(?<![\w-])--[a-z][\w-]*[a-z0-9]", node.value):
                    named.setdefault(option, set()).add(path.name)
    assert len(named) > 20  # the scan finds the options the code does name
    assert {o: sorted(p) for o, p in named.items() if o not in known} == {}


def test_a_model_folder_with_foreign_files_or_other_fold_models_is_refused(three_scans, tmp_path, capsys):
    from bidsqc.model.ensemble import DEFAULT_MODEL_DIR

    bids = three_scans
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    args = [str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01", "--model", str(model)]
    (model / "extra.pkl").write_bytes(b"\x80\x04not loaded")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected file(s) extra.pkl" in err[0]
    (model / "extra.pkl").unlink()
    fold = model / "fold_00.keras"
    fold.write_bytes(fold.read_bytes() + b"\0")
    assert main(args) == 2
    assert "replaced or damaged" in capsys.readouterr().err
    assert not (tmp_path / "out" / "sub-01").exists()


def test_a_sub_millimetre_scan_is_read_as_block_means_in_place_and_in_little_memory(tmp_path):
    import tracemalloc

    from bidsqc.preprocessing.conform import load_image

    rng = np.random.default_rng(0)
    shape = (160, 200, 200)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    data = (((grid ** 2).sum(axis=0) < 0.6) * 800 + rng.normal(100, 10, shape)).astype(np.int16)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [-40.0, -50.0, -50.0]
    path = tmp_path / "fine.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    tracemalloc.start()
    ras, info = conform(load_image(path), name="fine.nii.gz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ras.shape == (80, 100, 100) and np.allclose(ras.header.get_zooms()[:3], 1.0)
    assert info.voxel_size_mm == (0.5, 0.5, 0.5) and info.dims == shape and "2x2x2 blocks" in info.warnings[0]
    assert peak < 3 * data.nbytes  # the stored integers once, the 1 mm result, slabs: no float64 copy

    def centre(img, level):
        values = np.asarray(img.dataobj, np.float64)
        return img.affine[:3, :3] @ np.array(np.nonzero(values > level)).mean(axis=1) + img.affine[:3, 3]

    assert np.allclose(centre(ras, 400), centre(nib.Nifti1Image(data, affine), 400), atol=0.05)
    assert float(np.asarray(ras.dataobj).mean()) == pytest.approx(float(data.mean()), rel=1e-3)


@pytest.fixture(scope="module")
def three_scans(tmp_path_factory, shared_data):
    from conftest import three_subject_dataset

    return three_subject_dataset(tmp_path_factory.mktemp("three") / "ds", shared_data)


def _cli(*args):
    import subprocess
    import sys

    # its own session: a kill reaches the run and its Nipype workers, as a scheduler's would
    return subprocess.Popen([sys.executable, "-m", "bidsqc.cli.run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finished(out):
    return {r["source_file"]: r["qc"] for t in out.glob("sub-*/sub-*_desc-qc_T1w.tsv") for r in read_tsv(t)}


@pytest.mark.faults
def test_a_killed_run_leaves_nothing_partial_and_a_rerun_completes(three_scans, tmp_path, templateflow_home):
    import json
    import signal
    import time

    out = tmp_path / "out"
    proc = _cli(three_scans, out, "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports")
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline and not list(out.rglob("*_desc-qc_T1w.json")):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for path in out.rglob("*"):  # nothing half-written: no temporary file, every JSON whole
        assert not path.name.endswith(".tmp")
        if path.suffix == ".json":
            json.loads(path.read_text())
    rerun = _cli(three_scans, out, "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports")
    assert rerun.wait() == 0, rerun.stdout.read()
    assert sorted(_finished(out)) == [f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz" for i in (1, 2, 3)]
    assert set(_finished(out).values()) <= {"pass", "uncertain", "fail"}


@pytest.mark.faults
def test_two_participant_runs_at_once_into_one_folder_then_the_group(three_scans, tmp_path, templateflow_home):
    out = tmp_path / "out"
    runs = [_cli(three_scans, out, "participant", "--participant-label", *labels, "--nprocs", "1", "--mc-samples",
                 "1", "--no-reports") for labels in (["01", "02"], ["03"])]
    assert [r.wait() for r in runs] == [0, 0]
    assert main([str(three_scans), str(out), "group", "--no-reports"]) == 0
    participants = sorted(r["participant_id"] for r in read_tsv(out / "group_desc-qc_T1w.tsv"))
    assert participants == ["sub-01", "sub-02", "sub-03"]
    assert not list(out.rglob("*.tmp"))


def test_labels_are_checked_before_they_reach_a_path_and_no_shell_is_used(three_scans, tmp_path, capsys):
    from pathlib import Path

    for label in ("../../etc", "01;rm", "0*"):
        with pytest.raises(SystemExit) as stop:
            main([str(three_scans), str(tmp_path / "out"), "participant", "--participant-label", label])
        assert stop.value.code == 2 and "is not a BIDS label" in capsys.readouterr().err
    root = Path(__file__).resolve().parent.parent
    assert not [str(p) for d in ("bidsqc", "benchmarks", "scripts") for p in (root / d).rglob("*.py")
                if "shell=True" in p.read_text()]


def test_an_unwritable_work_folder_is_one_line_and_exit_2(three_scans, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the work folder should go")
    code = main([str(three_scans), str(tmp_path / "out"), "participant", "--participant-label", "01",
                 "-w", str(blocker / "work")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "-w/--work-dir" in err[0] and "is not writable" in err[0]
