"""Split ../shared/data into training scans and held-out evaluation scans (by subject).

Writes ``train.tsv`` (source_file, subject, rating) for ``bidsqc-train --labels`` and
``holdout.tsv`` (source_file, subject, group) for ``bench_accuracy.py``:
- ``heldout``: whole subjects of the skull-stripped sets never seen in training,
- ``raw_head``: clean raw heads from scanners never seen in training (all of raw/),
- ``raw_stripped``: clean skull-stripped scans in raw/,
- ``questionable``: scans the manifest calls questionable, 2D or not 3D T1w (never "good"),
- ``evaluation_only``: studies kept for measuring shift only (OASIS-1: never trained or
  calibrated on; ``benchmarks/bench_shift.py``); they do not enter the draw of held-out
  subjects, so the split of the other scans is the one the shipped ensemble was trained on.
IXI heads (2 mm) stay in training so that some skull is seen with artifacts.
``--extra-raw-head FILE`` adds clean raw heads from outside ../shared/data to ``raw_head``
(benchmarks/fetch_extra_raw.sh fetches one: Colin27, from Debian's mricron-data).

    python benchmarks/make_split.py ../shared/data build/split --holdout-fraction 0.2 --seed 0
"""

import argparse
import csv
import re
from pathlib import Path

import numpy as np

NOT_GOOD = re.compile(r"questionable|2D|not a 3D", re.IGNORECASE)
CLEAN_GROUPS = ("heldout", "raw_head", "raw_stripped")  # holdout.tsv groups of presumed-clean scans
EVALUATION_ONLY = ("oasis1/",)  # folders of ../shared/data that no model trains or calibrates on


def subject_of(path):
    name = Path(path).name
    for pattern in (r"^(sub-[A-Za-z0-9]+)", r"^(IXI\d+)"):
        match = re.match(pattern, name)
        if match:
            return f"{Path(path).parent.name}-{match.group(1)}"
    return f"{Path(path).parent.name}-{name.split('.')[0]}"


def read_manifest(data_dir):
    with open(Path(data_dir) / "manifest.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def split(data_dir, holdout_fraction=0.2, seed=0):
    rows = read_manifest(data_dir)
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    stripped_subjects = sorted({subject_of(r["file"]) for r in rows
                                if not r["file"].startswith(("raw/", "ixi/") + EVALUATION_ONLY)})
    n_hold = int(round(holdout_fraction * len(stripped_subjects)))
    held = set(rng.choice(stripped_subjects, size=n_hold, replace=False).tolist())
    for row in rows:
        path = str((Path(data_dir) / row["file"]).resolve())
        subject = subject_of(row["file"])
        if row["file"].startswith(EVALUATION_ONLY):
            holdout.append({"source_file": path, "subject": subject, "group": "evaluation_only"})
        elif NOT_GOOD.search(row.get("note", "")):
            holdout.append({"source_file": path, "subject": subject, "group": "questionable"})
        elif row["file"].startswith("raw/"):
            group = "raw_head" if row["skull"] == "head" else "raw_stripped"
            holdout.append({"source_file": path, "subject": subject, "group": group})
        elif subject in held:
            holdout.append({"source_file": path, "subject": subject, "group": "heldout"})
        else:
            train.append({"source_file": path, "subject": subject, "rating": "good"})
    return train, holdout


def write_tsv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--holdout-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra-raw-head", type=Path, action="append", default=[], metavar="FILE",
                        help="a clean raw head (T1w NIfTI) from elsewhere, rated with the raw_head group")
    args = parser.parse_args()
    train, holdout = split(args.data_dir, args.holdout_fraction, args.seed)
    for path in args.extra_raw_head:
        if not path.is_file():
            parser.error(f"--extra-raw-head {path}: no such file")
        holdout.append({"source_file": str(path.resolve()), "subject": f"extra-{path.name.split('.')[0]}",
                        "group": "raw_head"})
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tsv(out / "train.tsv", train)
    write_tsv(out / "holdout.tsv", holdout)
    groups = {}
    for row in holdout:
        groups[row["group"]] = groups.get(row["group"], 0) + 1
    print(f"train: {len(train)} scans, {len({r['subject'] for r in train})} subjects; holdout: {groups}")


if __name__ == "__main__":
    main()
