"""``bidsqc --demo OUT``: a self-contained demonstration that needs no data and no network.

Builds ``OUT/bids`` from the MNI152 template that nilearn ships: two clean
"participants" (different contrast, bias and resolution, a small head rotation),
three corrupted with known artifacts, and one broken file; then runs the
participant and group levels with the shipped ensemble into ``OUT/derivatives``
and prints the table.
"""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

DEMO_SCANS = [
    # (subject, artifact, severity)
    ("01", "none", None),
    ("02", "clean", None),
    ("03", "motion", "severe"),
    ("04", "ghosting", "severe"),
    ("05", "missing_coverage", "severe"),
]


def _rotated(img, degrees, rng):
    """The template as a scanner would place it: small rotation about the centre, Rician noise."""
    from scipy import ndimage

    data = np.asarray(img.dataobj, dtype=np.float32)
    data = ndimage.rotate(data, degrees, axes=(1, 2), reshape=False, order=1)
    level = 0.02 * float(data[data > 0.1 * data.max()].mean())
    noisy = np.sqrt((data + rng.normal(0, level, data.shape)) ** 2 + rng.normal(0, level, data.shape) ** 2)
    return nib.Nifti1Image((noisy * 1000).astype(np.int16), img.affine)


def build_demo_dataset(bids_dir, seed=0):
    """Write the demo BIDS dataset; returns {subject: description}."""
    from nilearn import datasets

    from ..artifacts import simulate
    from ..artifacts.simulators import apply_artifact, sample_clean_variation

    rng = np.random.default_rng(seed)
    bids_dir = Path(bids_dir)
    bids_dir.mkdir(parents=True, exist_ok=True)
    (bids_dir / "dataset_description.json").write_text(json.dumps(
        {"Name": "bidsqc demo (MNI152 template with simulated artifacts)", "BIDSVersion": "1.9.0",
         "DatasetType": "raw", "License": "see nilearn's MNI152 template licence"}, indent=2))
    template = datasets.load_mni152_template(resolution=1)
    truth = {}
    for subject, artifact, severity in DEMO_SCANS:
        img = _rotated(template, float(rng.uniform(-6, 6)), rng)
        if artifact == "clean":
            img = apply_artifact(img, "clean", sample_clean_variation(rng))
        elif artifact != "none":
            img, _ = simulate(img, artifact, severity, rng)
        out = bids_dir / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        data = np.asarray(img.dataobj, dtype=np.float32)
        nib.save(nib.Nifti1Image(np.clip(data, 0, 32767).astype(np.int16), img.affine), out)
        truth[f"sub-{subject}"] = "clean" if artifact in ("none", "clean") else f"{artifact} ({severity})"
    broken = bids_dir / "sub-06" / "anat" / "sub-06_T1w.nii.gz"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\x1f\x8b\x08\x00 this file was cut short during transfer")
    truth["sub-06"] = "broken file"
    return truth


def run_demo(out_dir, args):
    """Build the demo dataset, run both levels, print the table; returns the exit code."""
    from ..outputs import read_tsv
    from .run import main

    out_dir = Path(out_dir).resolve()
    bids_dir, deriv = out_dir / "bids", out_dir / "derivatives"
    print(f"bidsqc demo: building a BIDS dataset in {bids_dir} from nilearn's MNI152 template ...")
    truth = build_demo_dataset(bids_dir)
    common = ["--nprocs", str(args.nprocs or 2)]
    if args.model:
        common += ["--model", str(args.model)]
    if args.force:
        common += ["--force"]
    code = main([str(bids_dir), str(deriv), "participant"] + common)
    if code not in (0,):
        return code
    code = main([str(bids_dir), str(deriv), "group"])
    rows = read_tsv(deriv / "group_desc-qc_T1w.tsv")
    print(f"\n{'participant':<12}{'truth':<28}{'qc':<10}{'p_bad':>7}{'sd':>7}  likely artifact")
    for row in rows:
        likely = row.get("likely_artifact", "") if row["qc"] not in ("pass", "error") else ""
        print(f"{row['participant_id']:<12}{truth.get(row['participant_id'], ''):<28}{row['qc']:<10}"
              f"{row['p_bad']:>7}{row['p_bad_std']:>7}  {likely or (row['error'] if row['qc'] == 'error' else '')}")
    print("\nwhy:")
    for row in rows:
        print(f"  {row['participant_id']}: {row['error'] if row['qc'] == 'error' else row.get('reason', 'n/a')}")
    print(f"\nresults: {deriv}/group_desc-qc_T1w.tsv (all rows), {deriv}/group_desc-qc_exclude.txt "
          f"(failed scans), per-scan JSON and preprocessed images under {deriv}/sub-*/anat/")
    print(f"reports: {deriv}/group_desc-qc_T1w.html (every scan: sort, filter, rate, export ratings), and a "
          f"page per scan, {deriv}/sub-<label>/anat/sub-<label>_desc-qc_T1w.html (open them in a browser)")
    sys.stdout.flush()
    return code
