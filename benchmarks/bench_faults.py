"""bidsqc against broken inputs and faults, through the real command line:

- every input of tests/fault_inputs.py (13 broken files, a file pybids leaves out, a good scan)
  in one participant run: handled as specified (an ``error`` row whose message names the
  file and the problem, or a ``skipped`` entry), and the good scan rated;
- a run killed (SIGKILL) while it rates 3 scans, then run again: outputs lost (a scan with
  no row after the rerun) and partial files left (``*.tmp``, a JSON that does not parse);
- two participant runs at once into one output folder, then the group level;
- a 0.5 mm image (a real 1 mm scan upsampled to 0.5 mm, 502x502x362 voxels): seconds and
  the peak memory of the whole process tree.

    python benchmarks/bench_faults.py [--data ../shared/data]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_participant import tree_rss_bytes  # noqa: E402
from conftest import three_subject_dataset  # noqa: E402
from fault_inputs import CASES, write_fault_dataset  # noqa: E402


def run(args, env, sample=False, kill_after=None):
    """Run the bidsqc CLI; returns (exit code, seconds, peak bytes of the process tree, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "bidsqc.cli.run"] + [str(a) for a in args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, started = [0], time.perf_counter()

    def watch():
        while proc.poll() is None:
            if sample:
                peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            if kill_after and kill_after():  # the whole tree at once, as the OOM killer or a scheduler would
                for pid in [proc.pid] + _children(proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    output, _ = proc.communicate()
    thread.join()
    return proc.returncode, time.perf_counter() - started, peak[0], output


def _children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out + [c for child in out for c in _children(child)]


def partial_files(out):
    bad = [str(p) for p in out.rglob("*.tmp")]
    for path in out.rglob("*.json"):
        try:
            json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            bad.append(str(path))
    return bad


def rows(out):
    found = {}
    for table in out.glob("sub-*/sub-*_desc-qc_T1w.tsv"):
        lines = table.read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            row = dict(zip(header, line.split("\t")))
            found[row["source_file"]] = row
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench_faults: {args.data} is missing (needs ../shared/data)")
    tmp = Path(tempfile.mkdtemp(prefix="bidsqc_faults_"))
    env = dict(os.environ)
    if "TEMPLATEFLOW_HOME" not in env and (REPO.parent / "shared" / "templateflow").is_dir():
        shutil.copytree(REPO.parent / "shared" / "templateflow", tmp / "templateflow")
        env["TEMPLATEFLOW_HOME"] = str(tmp / "templateflow")
    lines = []

    # 1. every broken input in one run
    bids = write_fault_dataset(tmp / "faults", args.data)
    out = tmp / "faults_out"
    code, seconds, _, _ = run([bids, out, "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports"], env)
    run([bids, out, "group", "--no-reports"], env)
    found = rows(out)
    handled = 0
    for label, (_, expected) in CASES.items():
        row = found.get(f"sub-{label}/anat/sub-{label}_T1w.nii.gz", {})
        handled += row.get("qc") == "error" and expected in row.get("error", "") and f"sub-{label}_" in row["error"]
    skipped = (out / "group_desc-qc_skipped.tsv").read_text().splitlines()[1:]
    handled += any("acq-a b" in line and "not alphanumeric" in line for line in skipped)
    good = found.get("sub-good/anat/sub-good_T1w.nii.gz", {}).get("qc") in ("pass", "uncertain", "fail")
    handled += good
    lines.append(f"  inputs tried              {len(CASES) + 2} (broken files, a label pybids leaves out, a good scan)")
    lines.append(f"  handled as specified      {handled} of {len(CASES) + 2}   (exit {code}, {seconds:.0f} s)")

    # 2. killed in the middle, then run again
    bids3 = three_subject_dataset(tmp / "three", args.data, "faults")
    out3 = tmp / "killed"
    code, _, _, _ = run([bids3, out3, "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports"], env,
                        kill_after=lambda: len(list(out3.rglob("*_desc-qc_T1w.json"))) >= 1)
    after_kill = len(list(out3.rglob("*_desc-qc_T1w.json")))
    partial_at_kill = partial_files(out3)
    code, _, _, _ = run([bids3, out3, "participant", "--nprocs", "2", "--mc-samples", "1", "--no-reports"], env)
    lost = 3 - len([r for r in rows(out3).values() if r["qc"] in ("pass", "uncertain", "fail")])
    lines.append(f"  killed run                {after_kill} of 3 scans finished at SIGKILL; the rerun exit {code}")
    lines.append(f"  outputs lost              {lost}   (must be 0)")
    partial = partial_at_kill + partial_files(out3)

    # 3. two participant runs at once into one folder, then the group level
    out2 = tmp / "concurrent"
    procs = [subprocess.Popen([sys.executable, "-m", "bidsqc.cli.run", str(bids3), str(out2), "participant",
                               "--participant-label", *labels, "--nprocs", "1", "--mc-samples", "1", "--no-reports"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for labels in (["01", "02"], ["03"])]
    codes = [p.wait() for p in procs]
    group, _, _, _ = run([bids3, out2, "group", "--no-reports"], env)
    group_rows = (out2 / "group_desc-qc_T1w.tsv").read_text().splitlines()[1:]
    lines.append(f"  concurrent runs           exits {codes}, group exit {group}: {len(group_rows)} of 3 rows")
    partial += partial_files(out2)
    listed = ": " + ", ".join(partial) if partial else ""
    lines.append(f"  partial files left        {len(partial)}   (must be 0){listed}")

    # 4. a 0.5 mm image
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    source = nib.load(args.data / "ds002748" / "sub-01_T1w.nii.gz")
    fine = ndimage.zoom(np.asarray(source.dataobj, np.float32), 2, order=1)
    big = tmp / "big" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    big.parent.mkdir(parents=True)
    (tmp / "big" / "dataset_description.json").write_text(json.dumps({"Name": "big", "BIDSVersion": "1.9.0"}))
    affine = source.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = source.affine[:3, 3] - 0.25 * source.affine[:3, :3].sum(axis=1)
    nib.save(nib.Nifti1Image(np.round(fine).astype(np.int16), affine), big)
    shape = fine.shape
    del fine
    code, seconds, peak, output = run([tmp / "big", tmp / "big_out", "participant", "--nprocs", "1",
                                       "--no-reports"], env, sample=True)
    lines.append(f"  0.5 mm image {'x'.join(map(str, shape))}   {seconds:.0f} s, peak memory {peak / 2 ** 30:.2f} GiB "
                 f"(exit {code}; target < 2 GiB)")
    print(f"bidsqc fault benchmark ({os.cpu_count()} CPUs)")
    print("\n".join(lines))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
