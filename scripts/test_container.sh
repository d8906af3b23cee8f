#!/usr/bin/env bash
# Build the bidsqc image with podman and run it as a cluster would: read-only image, no network,
# the dataset bound read-only and a writable output folder; participant then group level on a
# 3-subject dataset made from ../shared/data; checks the outputs and prints the image's size and
# build time. Needs root (podman with runc, debootstrap for a local Debian base image: no base
# image registry is reachable here; a user with Docker builds the Dockerfile unchanged).
#   bash scripts/test_container.sh            # BIDSQC_DATA=../shared/data, BIDSQC_CONTAINER_WORK=<tmp>
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BIDSQC_DATA:-../shared/data}
W=${BIDSQC_CONTAINER_WORK:-$(mktemp -d)}
mkdir -p "$W"
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap >/dev/null; break; }
done
printf '[containers]\ndefault_ulimits = []\n' > "$W/containers.conf"  # crun's rlimits fail here
export CONTAINERS_CONF="$W/containers.conf"
P="podman --runtime runc"
BASE=localhost/debian-python:bookworm
if ! $P image exists "$BASE"; then
    echo "test_container: making the local base image $BASE (debootstrap)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,passwd bookworm "$W/rootfs" >/dev/null
    tar -C "$W/rootfs" -c . | $P import - "$BASE" >/dev/null
fi
# the wheels of bidsqc and every dependency, so that the build needs no package index
rm -f wheels/bidsqc-*.whl
python3 -m pip wheel -q --find-links wheels -w wheels . setuptools wheel
VERSION=$(python3 -c "import re; print(re.search(r'__version__ = \"(.+?)\"', open('bidsqc/__init__.py').read()).group(1))")
start=$(date +%s)
$P build -q --network host --build-arg BASE="$BASE" --build-arg VERSION="$VERSION" -t bidsqc:test . >/dev/null
build_s=$(( $(date +%s) - start ))
size=$($P image inspect bidsqc:test --format '{{.Size}}')

# 3 subjects: two skull-stripped scans at 2 mm and a raw head, and a BIDS description
python3 - "$DATA" "$W/bids" <<'PY'
import json, shutil, sys
from pathlib import Path
import nibabel as nib, numpy as np
data, bids = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(bids, ignore_errors=True)
(bids).mkdir(parents=True)
(bids / "dataset_description.json").write_text(json.dumps({"Name": "container test", "BIDSVersion": "1.9.0"}))
for label, rel in (("01", "ds002748/sub-01_T1w.nii.gz"), ("02", "ds002748/sub-05_T1w.nii.gz")):
    img = nib.load(data / rel)
    d = np.asarray(img.dataobj, np.float32)
    d = d[:d.shape[0] // 2 * 2, :d.shape[1] // 2 * 2, :d.shape[2] // 2 * 2]
    d = d.reshape(d.shape[0] // 2, 2, d.shape[1] // 2, 2, d.shape[2] // 2, 2).mean(axis=(1, 3, 5))
    out = bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz"
    out.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(d, img.affine @ np.diag([2, 2, 2, 1])), out)
out = bids / "sub-03" / "anat" / "sub-03_T1w.nii.gz"
out.parent.mkdir(parents=True)
shutil.copyfile(data / "raw" / "nichart_dcm2nii_sample_trio_mprage.nii.gz", out)
PY
rm -rf "$W/out" && mkdir -p "$W/out" && chmod 777 "$W/out"  # the image runs as uid 1000
RUN="$P run --rm --read-only --network none -v $W/bids:/data:ro -v $W/out:/out bidsqc:test"
start=$(date +%s)
$RUN /data /out participant --nprocs 2
run_s=$(( $(date +%s) - start ))
$RUN /data /out group
python3 - "$W/out" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = list(csv.DictReader(open(out / "group_desc-qc_T1w.tsv"), delimiter="\t"))
assert sorted(r["participant_id"] for r in rows) == ["sub-01", "sub-02", "sub-03"], rows
assert all(r["qc"] in ("pass", "fail", "uncertain") for r in rows), [r["qc"] for r in rows]
assert (out / "group_desc-qc_T1w.html").is_file()
assert all((out / f"sub-0{i}" / "anat" / f"sub-0{i}_desc-qc_T1w.html").is_file() for i in (1, 2, 3))
assert not list(out.rglob("*.tmp"))
print("test_container: outputs checked:", ", ".join(f"{r['participant_id']} {r['qc']}" for r in rows))
PY
echo "test_container: image bidsqc:test $(( size / 1000000 )) MB, built in ${build_s} s; participant level (3 scans) ${run_s} s"
