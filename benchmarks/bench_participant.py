"""Seconds per T1w scan and peak memory of ``bidsqc ... participant --nprocs 2`` on 5 real scans,
and what the HTML reports add (per scan: the saliency map and the figures, from each scan's
``report_timings``; the group page's time and size).

Builds a BIDS dataset of 5 scans from ../shared/data (3 skull-stripped, 2 raw heads),
runs the real CLI in a subprocess with the shipped ensemble, samples the resident
memory of the whole process tree (every 0.1 s, from /proc) and prints the figures.
Targets: <= 20 s per scan end to end on 2 cores, <= 3 GiB peak, reports <= 2 s per scan.

    python benchmarks/bench_participant.py [--data ../shared/data] [--nprocs 2]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCANS = [
    ("01", "ds002748/sub-01_T1w.nii.gz"),
    ("02", "ds002748/sub-11_T1w.nii.gz"),
    ("03", "dbclab/sub-0004_ses-V01_T1w.nii.gz"),
    ("04", "raw/dcmqa_philips_enh_ADNI_Sag3D_MPRAGE.nii.gz"),
    ("05", "raw/nichart_dcm2nii_sample_trio_mprage.nii.gz"),
]


def tree_rss_bytes(root_pid):
    """Sum of VmRSS over ``root_pid`` and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--template", default="MNI152NLin6Asym")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"bench_participant: {args.data} is missing (needs ../shared/data)")
    tmp = Path(tempfile.mkdtemp(prefix="bidsqc_bench_"))
    bids = tmp / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
    for label, rel in SCANS:
        dst = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
        dst.parent.mkdir(parents=True)
        shutil.copyfile(args.data / rel, dst)
    env = dict(os.environ)
    shared_tf = REPO.parent / "shared" / "templateflow"
    if "TEMPLATEFLOW_HOME" not in env and shared_tf.is_dir():
        shutil.copytree(shared_tf, tmp / "templateflow")
        env["TEMPLATEFLOW_HOME"] = str(tmp / "templateflow")
    cmd = [sys.executable, "-m", "bidsqc.cli.run", str(bids), str(tmp / "out"), "participant",
           "--nprocs", str(args.nprocs), "--template", args.template, "-w", str(tmp / "work")]
    peak = [0]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_bytes(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    rows = []
    for table in sorted((tmp / "out").glob("sub-*/sub-*_desc-qc_T1w.tsv")):
        lines = table.read_text().splitlines()
        header = lines[0].split("\t")
        rows += [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    print(output[-1500:] if proc.returncode else "", end="")
    print(f"bidsqc participant benchmark: {len(SCANS)} T1w scans, --nprocs {args.nprocs}, "
          f"{os.cpu_count()} CPUs, template {args.template}")
    print(f"  exit code                 {proc.returncode}")
    print(f"  wall time                 {wall:.1f} s")
    print(f"  seconds per T1w scan      {wall / len(SCANS):.1f} s   target <= 20 s   "
          f"{'met' if wall / len(SCANS) <= 20 else 'MISSED'}")
    print(f"  peak memory (all procs)   {peak[0] / 2 ** 30:.2f} GiB   target <= 3 GiB   "
          f"{'met' if peak[0] <= 3 * 2 ** 30 else 'MISSED'}")
    for row in rows:
        print(f"    {row['participant_id']}  qc={row['qc']:<9} p_bad={row['p_bad']}  runtime_s={row['runtime_s']}"
              f"  reg_quality={row['reg_quality']}")
    reports = [json.loads(p.read_text()).get("report_timings") or {} for p in (tmp / "out").rglob("*_desc-qc_T1w.json")]
    added = [sum(t.values()) for t in reports if t]
    if added:
        print(f"  reports per scan          {sum(added) / len(added):.2f} s mean, {max(added):.2f} s max "
              f"(saliency {max(t.get('saliency', 0) for t in reports):.2f} s max, figures "
              f"{max(t.get('figures', 0) for t in reports):.2f} s max)   target <= 2 s   "
              f"{'met' if max(added) <= 2 else 'MISSED'}")
        pages = list((tmp / "out").rglob("sub-*_desc-qc_T1w.html"))
        size = sum(p.stat().st_size for p in pages) / len(pages) / 1e6
        print(f"  per-scan pages            {len(pages)}, {size:.2f} MB each")
        started = time.perf_counter()
        group = subprocess.run([sys.executable, "-m", "bidsqc.cli.run", str(bids), str(tmp / "out"), "group"],
                               env=env, capture_output=True, text=True)
        page = tmp / "out" / "group_desc-qc_T1w.html"
        print(f"  group level with its page {time.perf_counter() - started:.1f} s (exit {group.returncode}), page "
              f"{page.stat().st_size / 1e3 if page.exists() else 0:.0f} kB")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
