#!/usr/bin/env bash
# Fetch clean raw heads from outside ../shared/data for the raw_head group of the accuracy
# benchmark (make_split.py --extra-raw-head). Needs only Debian's package archive:
#   Colin27 (ch2.nii.gz, MRIcron's copy): one adult head with skull, 27 averaged T1w scans
#   (Philips 1.5 T), 1 mm, in MNI space. Never used for training or design.
# Usage: benchmarks/fetch_extra_raw.sh OUT_DIR   -> OUT_DIR/colin27_ch2.nii.gz
set -euo pipefail
out=${1:?usage: fetch_extra_raw.sh OUT_DIR}
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"  # apt-get download runs as _apt
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download mricron-data >/dev/null)
dpkg-deb -x "$work"/mricron-data_*.deb "$work/x"
cp "$work/x/usr/share/mricron/templates/ch2.nii.gz" "$out/colin27_ch2.nii.gz.tmp"
mv "$out/colin27_ch2.nii.gz.tmp" "$out/colin27_ch2.nii.gz"
echo "$out/colin27_ch2.nii.gz"
