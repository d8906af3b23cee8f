"""Clean raw heads with another field of view, or defaced: do they still pass?

Scanners and sites differ in how much of the head and neck the field of view holds, and
shared data are often defaced. Each raw head of the holdout list (group ``raw_head``,
``benchmarks/make_split.py``) is rated through the real command line (``bidsqc ...
participant`` with the shipped ensemble, or ``--model``) as it is and in four kinds of
change, drawn with ``--seed``:

- ``tight``: each side's background margin cut to a random 0-100 % of itself (the head's
  foreground kept whole);
- ``neck``: the field of view's lower edge raised to a random height between where it is
  and 10 mm below the brain (the brain found by the scan's registration to the template);
- ``pad``: 0-30 mm of zeros added on each side (a larger, zero-filled field of view);
- ``deface``: the face set to zero as defacing tools do: outside the template brain dilated
  by 10 mm, in front of y = 20 mm and below z = 20 mm in template space, mapped into the
  scan by its registration.

and, as a check that a real cut is still seen, one kind that is an artifact:

- ``cut``: the field of view's upper edge lowered to a random 10-35 mm below the top
  of the brain (cropped, as a scan whose field of view ends inside the brain, not
  zero-filled as the simulator's missing coverage); drawn from its own generator, so the
  other kinds' draws do not depend on it.

Prints each variant's verdict and reason, and the fail and uncertain rates per kind
(``deface`` draws nothing, so each head has one defaced variant); for ``cut`` also
how many are named ``missing_coverage``. ``all_varied`` sums the clean kinds only.

    python benchmarks/bench_raw_fov.py [--holdout build/split/holdout.tsv] [--draws 2] [--seed 2024]
"""

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bidsqc.artifacts.simulators import foreground_bbox  # noqa: E402
from bidsqc.model.card import read_card, write_json_atomic  # noqa: E402
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR  # noqa: E402
from bidsqc.preprocessing.conform import conform, load_image  # noqa: E402
from bidsqc.preprocessing.register import register_affine  # noqa: E402
from bidsqc.preprocessing.templates import get_template  # noqa: E402

KINDS = ("tight", "neck", "pad", "deface")
CUT_KIND = "cut"
NECK_MARGIN_MM = 10.0
BRAIN_CUT_MM = (10.0, 35.0)
PAD_MM = 30.0
FACE_DILATE_MM, FACE_Y_MM, FACE_Z_MM = 10.0, 20.0, 20.0


def template_coordinates(img, template_to_t1w):
    """Template world coordinates (3, *shape) of every voxel of ``img``."""
    ijk = np.indices(img.shape[:3], dtype=np.float32).reshape(3, -1)
    world = img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]
    to_template = np.linalg.inv(np.asarray(template_to_t1w, np.float64))
    out = to_template[:3, :3] @ world + to_template[:3, 3:4]
    return out.reshape((3,) + img.shape[:3]).astype(np.float32)


def template_brain_distance(template, coords):
    """Distance (mm) of each point ``coords`` (template world) from the template brain;
    points outside the template's grid count as far (inf)."""
    mask = np.asarray(template.mask.dataobj) > 0.5
    zooms = np.sqrt((template.mask.affine[:3, :3] ** 2).sum(axis=0))
    distance = ndimage.distance_transform_edt(~mask, sampling=zooms)
    vox = np.linalg.inv(template.mask.affine)
    ijk = np.tensordot(vox[:3, :3], coords, axes=1) + vox[:3, 3].reshape(3, 1, 1, 1)
    return ndimage.map_coordinates(distance, ijk, order=1, mode="constant", cval=np.inf)


def crop(img, low, high):
    """The voxels low..high (inclusive, per axis) of ``img``, with its affine moved to match."""
    return img.slicer[tuple(slice(lo, hi + 1) for lo, hi in zip(low, high))]


def vary(img, kind, rng, brain_distance, face):
    """``img`` (a conformed RAS head) with its field of view changed by ``kind``; returns
    (image, parameters)."""
    data = np.asarray(img.dataobj, np.float32)
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    shape = np.array(data.shape)
    if kind == "tight":
        bbox = foreground_bbox(data)
        keep = rng.uniform(0, 1, size=(3, 2))
        low = [int(round(lo * k)) for (lo, _), k in zip(bbox, keep[:, 0])]
        high = [int(n - 1 - round((n - 1 - hi) * k)) for (_, hi), n, k in zip(bbox, shape, keep[:, 1])]
        return crop(img, low, high), {"low": low, "high": high}
    if kind == "neck":
        brain_rows = np.flatnonzero((brain_distance <= 0).any(axis=(0, 1)))
        top = int(brain_rows[0] - round(NECK_MARGIN_MM / zooms[2])) if brain_rows.size else 0
        cut = int(rng.integers(0, max(top, 0) + 1))
        lowest = int(brain_rows[0]) if brain_rows.size else None
        return crop(img, [0, 0, cut], list(shape - 1)), {"cut_voxels": cut, "brain_lowest_voxel": lowest}
    if kind == "pad":
        widths = np.round(rng.uniform(0, PAD_MM, size=(3, 2)) / zooms[:, None]).astype(int)
        affine = img.affine.copy()
        affine[:3, 3] = img.affine[:3, :3] @ (-widths[:, 0].astype(float)) + img.affine[:3, 3]
        return nib.Nifti1Image(np.pad(data, widths), affine), {"pad_voxels": widths.tolist()}
    if kind == "deface":
        out = np.where(face, 0, data).astype(np.float32)
        return nib.Nifti1Image(out, img.affine), {"face_voxels": int(face.sum())}
    if kind == CUT_KIND:
        brain_rows = np.flatnonzero((brain_distance <= 0).any(axis=(0, 1)))
        if not brain_rows.size:
            raise ValueError("the registered template brain is not inside the scan")
        depth = float(rng.uniform(*BRAIN_CUT_MM))
        top = int(brain_rows[-1] - round(depth / zooms[2]))
        return crop(img, [0, 0, 0], [shape[0] - 1, shape[1] - 1, top]), {"cut_mm": round(depth, 1),
                                                                         "brain_top_voxel": int(brain_rows[-1])}
    raise ValueError(kind)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", type=Path, default=REPO / "build" / "split" / "holdout.tsv")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--draws", type=int, default=2, help="variants of each kind per raw head")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench_raw_fov")
    parser.add_argument("--nprocs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bidsqc.cli.run import main as bidsqc_main
    from bidsqc.outputs import read_tsv

    with open(args.holdout, newline="") as handle:
        heads = [row["source_file"] for row in csv.DictReader(handle, delimiter="\t") if row["group"] == "raw_head"]
    if not heads:
        sys.exit(f"{args.holdout}: no raw_head rows")
    template = get_template(read_card(args.model)["input"]["template"], allow_fallback=False)
    rng = np.random.default_rng(args.seed)
    cut_rng = np.random.default_rng([args.seed, 1])
    bids = args.out / "bids"
    truth = {}
    for h, source in enumerate(heads):
        img, _ = conform(load_image(source), name=source)
        template_to_t1w, _ = register_affine(img, template)
        coords = template_coordinates(img, template_to_t1w)
        distance = template_brain_distance(template, coords)
        face = (distance > FACE_DILATE_MM) & (coords[1] > FACE_Y_MM) & (coords[2] < FACE_Z_MM)
        del coords
        # defacing draws nothing: one variant of it
        variants = [("original", img, {})] + [(f"{kind}{d}",) + vary(img, kind, rng, distance, face) for kind in KINDS
                                              for d in range(1 if kind == "deface" else args.draws)]
        variants += [(f"{CUT_KIND}{d}",) + vary(img, CUT_KIND, cut_rng, distance, face) for d in range(args.draws)]
        for name, variant, params in variants:
            subject = f"h{h}{name}"
            path = bids / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.asarray(variant.dataobj, np.float32), variant.affine), path)
            truth[f"sub-{subject}"] = {"head": Path(source).name, "variant": name, "params": params,
                                       "shape": list(variant.shape)}
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "raw heads, field of view varied",
                                                               "BIDSVersion": "1.9.0"}))
    deriv = args.out / "derivatives"
    code = bidsqc_main([str(bids), str(deriv), "participant", "--nprocs", str(args.nprocs), "--model",
                        str(args.model), "--skip-bids-validation"])
    bidsqc_main([str(bids), str(deriv), "group"])
    rows = {r["participant_id"]: r for r in read_tsv(deriv / "group_desc-qc_T1w.tsv")}
    results = []
    print(f"\nbidsqc raw heads, field of view varied (seed {args.seed}, {args.draws} per kind; exit code {code})")
    for subject, info in truth.items():
        row = rows.get(subject, {})
        results.append(dict(info, subject=subject, qc=row.get("qc", "missing"), p_bad=row.get("p_bad"),
                            reason=row.get("reason"), likely_artifact=row.get("likely_artifact")))
        print(f"  {info['head'][:40]:<41}{info['variant']:<11}{row.get('qc', 'missing'):<10}"
              f"{row.get('p_bad', 'n/a'):>7}  {row.get('likely_artifact', ''):<17}{row.get('reason', '')}")
    summary = {}
    for kind in ("original",) + KINDS + (CUT_KIND,):
        verdicts = [r["qc"] for r in results if r["variant"].rstrip("0123456789") == kind]
        summary[kind] = {"n": len(verdicts), "failed": verdicts.count("fail"),
                         "uncertain": verdicts.count("uncertain"), "errors": verdicts.count("error")}
    summary[CUT_KIND]["named_missing_coverage"] = sum(
        r["likely_artifact"] == "missing_coverage" for r in results if r["variant"].startswith(CUT_KIND))
    varied = [r["qc"] for r in results if r["variant"] != "original" and not r["variant"].startswith(CUT_KIND)]
    summary["all_varied"] = {"n": len(varied), "failed": varied.count("fail"), "uncertain": varied.count("uncertain"),
                             "errors": varied.count("error")}
    for kind, s in summary.items():
        named = f", {s['named_missing_coverage']} named missing_coverage" if kind == CUT_KIND else ""
        print(f"  {kind:<11} {s['n']:>3} scans: {s['failed']} failed, {s['uncertain']} uncertain, "
              f"{s['errors']} errors{named}")
    write_json_atomic(args.out / "bench_raw_fov.json", {"seed": args.seed, "draws": args.draws,
                                                        "summary": summary, "results": results})
    print(f"full report: {args.out / 'bench_raw_fov.json'}")


if __name__ == "__main__":
    main()
