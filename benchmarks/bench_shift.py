"""Good scans unlike the training study: clean fail and uncertain rates and AUCs per group.

A QC tool is almost always run on a study it has never seen. Each group here is either real
scans from studies the ensemble never trained on, or held-out scans of the training study
(ds002748) shifted the way other studies differ (bidsqc.artifacts.shift):

- real: ``oasis1`` (evaluation only, Siemens 1.5 T, young and older adults; its rescans give
  a test-retest figure), ``lifespan`` (the held-out dbclab subjects), ``raw_heads`` (the
  held-out raw heads with skull, including a 4-year-old's),
- shifted held-out ds002748 scans: ``res_1.2mm``, ``res_1.5mm``, ``res_2mm``, ``anisotropic``
  (1 x 1 x 2.4 mm), ``contrast`` (grey matter and CSF against white matter, as another
  inversion time gives), ``noise_1.5T``, ``atrophy``, ``field_of_view`` (zero padded or tight),
  ``intensity`` (another scale and datatype),
- ``skull_removed``: the held-out raw heads with everything outside their registered template
  brain zeroed.

Every clean scan also gets a mild and a severe version of one artifact (the artifacts taken in
turn through each group, seeded), so AUCs are measured inside each group. Clean scans of a
group share one acquisition, so the group level's dataset-relative verdict
(bidsqc.model.relative) is measured per group too, on the clean scans with 15 % bad ones
drawn from the group's severe and mild versions (five draws).

Fine-tuning on a study's own ratings (``--finetune GROUP``): 20 training-split ds002748
scans shifted as GROUP is, with their simulated bad versions, fine-tune the ensemble on CPU
(a throwaway model), and GROUP's held-out scans are rated before and after.

    python benchmarks/bench_shift.py [--model DIR] [--out build/bench_shift] [--nprocs 2]
        [--finetune res_2mm] [--update-card]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_accuracy import auc, rate  # noqa: E402
from make_split import split  # noqa: E402

from bidsqc.artifacts import ARTIFACTS  # noqa: E402
from bidsqc.artifacts.shift import apply_shift, sample_shift  # noqa: E402
from bidsqc.model.card import write_json_atomic  # noqa: E402
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR, Ensemble  # noqa: E402
from bidsqc.model.relative import MIN_ACQUISITION_SCANS, relative_verdicts  # noqa: E402
from bidsqc.preprocessing.conform import conform, load_image  # noqa: E402
from bidsqc.preprocessing.register import register_affine  # noqa: E402
from bidsqc.preprocessing.templates import cached_template  # noqa: E402
from bidsqc.scores import SCORE_COLUMNS  # noqa: E402
from bidsqc.training.dataset import assign_keys, build_volumes, detector_table, grid_signature  # noqa: E402

TARGETS = {"clean_fail_rate": 0.03, "clean_uncertain_rate": 0.10, "auc_clean_vs_severe": 0.98,
           "auc_clean_vs_mild": 0.90, "severe_failed": 0.90, "artifact_top1_severe": 0.85}
SHIFTED = {"res_1.2mm": ("resolution", {"voxel_mm": 1.2}), "res_1.5mm": ("resolution", {"voxel_mm": 1.5}),
           "res_2mm": ("resolution", {"voxel_mm": 2.0}), "anisotropic": ("resolution", {"voxel_mm": [1.0, 1.0, 2.4]}),
           "contrast": ("contrast", None), "noise_1.5T": ("field_strength", None), "atrophy": ("atrophy", None),
           "field_of_view": ("field_of_view", None), "intensity": ("intensity", None)}
BAD_SHARE = 0.15
REALISTIC_DRAWS = 5
FINETUNE_SCANS = 20
FINETUNE_EPOCHS = 4


def source_groups(data_dir):
    """{group: [scan dicts]} of the real scans that are not the training study's: the
    evaluation-only OASIS-1 scans, the held-out lifespan (dbclab) subjects and the held-out
    raw heads; and the held-out training-study scans the shifted groups are made from."""
    _, holdout = split(data_dir)
    groups = {"oasis1": [], "lifespan": [], "raw_heads": [], "ds002748": []}
    for row in holdout:
        scan = {"source_file": row["source_file"], "subject": row["subject"]}
        if row["group"] == "evaluation_only" and "/oasis1/" in row["source_file"]:
            groups["oasis1"].append(scan)
        elif row["group"] == "heldout":
            groups["lifespan" if "/dbclab/" in row["source_file"] else "ds002748"].append(scan)
        elif row["group"] == "raw_head":
            groups["raw_heads"].append(scan)
    return groups


def write_shifted(scans, group, out_dir, seed, template_id):
    """The scans of ``group`` shifted and written under ``out_dir``/sources/<group>/ (kept
    between runs); returns their scan dicts."""
    folder = out_dir / "sources" / group
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, sum(map(ord, group))])
    out = []
    for scan in scans:
        path = folder / Path(scan["source_file"]).name
        if group == "skull_removed":
            name, params = "skull_strip", None
        else:
            name, params = SHIFTED[group]
        if params is None and name != "skull_strip":  # skull stripping takes the scan's registration
            params = sample_shift(name, rng)
        if not path.exists():
            img, _ = conform(load_image(scan["source_file"]), name=scan["source_file"])
            if name == "skull_strip":
                template = cached_template(template_id)
                matrix, _ = register_affine(img, template)
                params = {"template_to_t1w": matrix, "template_mask": template.mask}
            shifted = apply_shift(img, name, params)
            tmp = path.with_name("tmp_" + path.name)
            nib.save(shifted, tmp)
            os.replace(tmp, path)
        out.append({"source_file": str(path), "subject": f"{group}-{scan['subject']}", "shift": name,
                    "shift_params": json.dumps({k: v for k, v in (params or {}).items()
                                                if k not in ("template_to_t1w", "template_mask")})})
    return out


def plan(groups, seed):
    """Jobs: every clean scan, and a mild and a severe version of one artifact per scan, the
    artifacts taken in turn within each group."""
    jobs = []
    rng = np.random.default_rng(seed)
    for group, scans in groups.items():
        for i, scan in enumerate(scans):
            base = {"subject": scan["subject"], "source_file": scan["source_file"], "group": group}
            jobs.append(dict(base, variant="original", artifact="none", severity="none", label=0.0, seed=None))
            artifact = ARTIFACTS[(i + sum(map(ord, group))) % len(ARTIFACTS)]
            for severity in ("mild", "severe"):
                jobs.append(dict(base, variant=f"{artifact}-{severity}", artifact=artifact, severity=severity,
                                 label=1.0, seed=int(rng.integers(2 ** 31))))
    return jobs


def summarise(results):
    clean = [r for r in results if r["artifact"] == "none"]
    mild = [r for r in results if r["severity"] == "mild"]
    severe = [r for r in results if r["severity"] == "severe"]
    p = lambda rows: np.array([r["p_bad"] for r in rows])  # noqa: E731
    share = lambda rows, qc: round(float(np.mean([r["qc"] == qc for r in rows])), 3) if rows else None  # noqa: E731
    return {"n_clean": len(clean), "clean_fail_rate": share(clean, "fail"),
            "clean_uncertain_rate": share(clean, "uncertain"),
            "auc_clean_vs_severe": round(auc(p(clean), p(severe)), 3) if clean and severe else None,
            "auc_clean_vs_mild": round(auc(p(clean), p(mild)), 3) if clean and mild else None,
            "severe_failed": share(severe, "fail"),
            "artifact_top1_severe": round(float(np.mean([r["top_artifact"] == r["artifact"] for r in severe])), 3)
            if severe else None}


def clean_ranges(results):
    """Each detector score's and the network's p_bad's range over the group's clean scans."""
    clean = [r for r in results if r["artifact"] == "none"]
    out = {"p_bad_network": [round(min(r["p_bad_network"] for r in clean), 3),
                             round(max(r["p_bad_network"] for r in clean), 3)]} if clean else {}
    for name, column in SCORE_COLUMNS.items():
        values = [r["detector_scores"][name] for r in clean if r.get("detector_scores")]
        if values:
            out[column] = [round(min(values), 4), round(max(values), 4)]
    return out


def table_row(result, scan_meta):
    """A result as the group table has it (the columns the dataset-relative verdict reads)."""
    row = {"source_file": result["source_file"], "qc": result["qc"], "p_bad_network": result["p_bad_network"],
           "acq_id": "n/a", "voxel_size_mm": scan_meta.get(result["source_file"], "n/a")}
    for name, column in SCORE_COLUMNS.items():
        row[column] = (result.get("detector_scores") or {}).get(name, "n/a")
    return row


def dataset_relative(results, voxel_sizes, seed):
    """Per group: clean scans flagged and bad scans caught by the dataset-relative verdict,
    with BAD_SHARE of the group's scans bad (REALISTIC_DRAWS draws), and with every version
    of every scan (the benchmark's balanced share: two bad versions per clean scan)."""
    rng = np.random.default_rng(seed)
    clean = [r for r in results if r["artifact"] == "none"]
    bad = [r for r in results if r["artifact"] != "none"]
    n_bad = max(1, int(round(BAD_SHARE * len(clean) / (1 - BAD_SHARE))))
    out = {"n_clean": len(clean), "n_bad_per_draw": n_bad}
    flagged, caught, participant_caught = [], [], []
    for _ in range(REALISTIC_DRAWS):
        chosen = [bad[i] for i in rng.choice(len(bad), size=min(n_bad, len(bad)), replace=False)]
        rows = relative_verdicts([table_row(r, voxel_sizes) for r in clean + chosen])
        verdicts = [row["qc_dataset"] for row in rows]
        flagged += [v == "fail" for v in verdicts[:len(clean)]]
        caught += [v == "fail" for v in verdicts[len(clean):]]
        participant_caught += [r["qc"] == "fail" for r in chosen]
    share = lambda values: round(float(np.mean(values)), 3)  # noqa: E731
    out["realistic"] = {"clean_failed": share(flagged), "bad_failed": share(caught),
                        "participant_clean_failed": share([r["qc"] == "fail" for r in clean]),
                        "participant_clean_not_passed": share([r["qc"] != "pass" for r in clean]),
                        "participant_bad_failed": share(participant_caught)}
    rows = relative_verdicts([table_row(r, voxel_sizes) for r in results])
    failed = [(row["qc_dataset"] == "fail", r["artifact"] == "none") for row, r in zip(rows, results)]
    out["balanced"] = {"clean_failed": share([f for f, is_clean in failed if is_clean]),
                       "bad_failed": share([f for f, is_clean in failed if not is_clean])}
    return out


def retest(results):
    """OASIS-1 rescans: whether the two scans of a subject get the same verdict."""
    manifest = {}
    with open(REPO.parent / "shared" / "data" / "manifest.tsv", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if "rescan of" in row.get("note", ""):
                first = row["note"].split("rescan of")[1].strip().split()[0]
                manifest[Path(row["file"]).name] = f"{first}_SS.nii.gz"
    verdict = {Path(r["source_file"]).name: r["qc"] for r in results
               if r["group"] == "oasis1" and r["artifact"] == "none"}
    pairs = [(verdict[a], verdict[b]) for a, b in manifest.items() if a in verdict and b in verdict]
    return {"pairs": len(pairs), "same_verdict": sum(a == b for a, b in pairs)}


def finetune(group, args, ensemble, results, rows, scored, cache):
    """Fine-tuning on a study's own ratings, measured: 20 clean training-split ds002748 scans
    shifted as ``group`` is, and their simulated bad versions, as a user's ratings;
    ``bidsqc-train --init-from`` the ensemble on CPU (a throwaway model, never shipped); then
    ``group``'s own held-out scans rated before and after. Returns the figures and minutes."""
    import time

    from bidsqc.training.folds import train_ensemble

    train_scans, _ = split(args.data)
    rated = [{"source_file": s["source_file"], "subject": s["subject"]} for s in train_scans
             if "/ds002748/" in s["source_file"]][:FINETUNE_SCANS]
    template_id = ensemble.card["input"]["template"]
    rated = write_shifted(rated, group, args.out / "finetune_sources", args.seed + 1, template_id)
    for scan in rated:
        scan["label"] = "good"
    started = time.time()
    tuned_dir = args.out / "finetune" / group
    card = train_ensemble(rated, tuned_dir, args.out / "finetune_cache", template_id=template_id,
                          init_from=args.model, folds=len(ensemble.models), epochs=FINETUNE_EPOCHS, batch_size=8,
                          learning_rate=2e-4, mixup_alpha=0.0, n_clean_variants=0, exclude_mild=True,
                          seed=args.seed, nprocs=args.nprocs, mc_samples=ensemble.card.get("mc_samples", 4))
    minutes = (time.time() - started) / 60
    tuned = Ensemble.load(tuned_dir)
    keys = {x["key"] for x in results if x["group"] == group}
    members = [r for r in rows if r["key"] in keys]
    after, _ = rate(tuned, members, cache, scored)
    before = [r for r in results if r["group"] == group]
    return {"group": group, "n_rated_scans": len(rated), "rated_volumes": card["training"]["n_volumes"],
            "epochs": FINETUNE_EPOCHS, "minutes": round(minutes, 1), "model_id": card["model_id"],
            "before": summarise(before), "after": summarise(after)}


def store_in_card(model_dir, report):
    """The figures in the model card's ``benchmark_shift`` field (no rating depends on it)."""
    path = Path(model_dir) / "model_card.json"
    card = json.loads(path.read_text())
    keep = ("n_clean", "clean_fail_rate", "clean_uncertain_rate", "auc_clean_vs_severe", "auc_clean_vs_mild",
            "severe_failed", "artifact_top1_severe", "clean_ranges")
    card["benchmark_shift"] = {
        "command": "python benchmarks/bench_shift.py", "seed": report["seed"], "targets": TARGETS,
        "groups": {g: dict({k: r[k] for k in keep}, dataset_relative=r["dataset_relative"]["realistic"])
                   for g, r in report["groups"].items()},
        "pooled": report["pooled"], "dataset_relative_pooled": report.get("dataset_relative_pooled"),
        "oasis1_retest": report["oasis1_retest"], "finetune": report.get("finetune")}
    write_json_atomic(path, card)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench_shift")
    parser.add_argument("--seed", type=int, default=2030, help="shift and artifact seed (training used 0)")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--groups", nargs="*", help="measure only these groups")
    parser.add_argument("--update-card", action="store_true", help="store the figures in the model card")
    parser.add_argument("--finetune", metavar="GROUP", help="also fine-tune on 20 rated scans shifted as GROUP "
                        "is (a shifted group) and rate GROUP again with the fine-tuned ensemble")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    ensemble = Ensemble.load(args.model)
    template_id = ensemble.card["input"]["template"]
    sources = source_groups(args.data)
    groups = {"oasis1": sources["oasis1"], "lifespan": sources["lifespan"], "raw_heads": sources["raw_heads"]}
    for group in SHIFTED:
        groups[group] = sources["ds002748"]
    groups["skull_removed"] = sources["raw_heads"]
    if args.groups:
        groups = {g: s for g, s in groups.items() if g in args.groups}
    for group in list(groups):
        if group in SHIFTED or group == "skull_removed":
            groups[group] = write_shifted(groups[group], group, args.out, args.seed, template_id)
        else:
            groups[group] = [dict(s, subject=f"{group}-{s['subject']}") for s in groups[group]]
    jobs = assign_keys(plan(groups, args.seed),
                       grid_signature(ensemble.grid_shape, ensemble.grid_affine, ensemble.mask))
    cache = args.out / "cache"
    rows, errors = build_volumes(jobs, cache, template_id, ensemble.grid_shape, ensemble.grid_affine,
                                 ensemble.mask, nprocs=args.nprocs)
    scored = detector_table(rows, cache, nprocs=args.nprocs, template_id=template_id)
    group_of = {j["key"]: j["group"] for j in jobs}
    results, _ = rate(ensemble, rows, cache, scored)
    for r in results:
        r["group"] = group_of[r["key"]]
    voxel_sizes = {}
    for scan in {r["source_file"] for r in results}:
        zooms = nib.load(scan).header.get_zooms()[:3]
        voxel_sizes[scan] = "x".join(f"{float(z):.2f}" for z in zooms)

    report = {"model_id": ensemble.model_id, "seed": args.seed, "errors": errors, "groups": {}}
    for group in groups:
        members = [r for r in results if r["group"] == group]
        if not members:
            continue
        entry = summarise(members)
        entry["clean_ranges"] = clean_ranges(members)
        entry["dataset_relative"] = dataset_relative(members, voxel_sizes, args.seed)
        report["groups"][group] = entry
    report["pooled"] = summarise(results)
    report["oasis1_retest"] = retest(results)
    if args.finetune:
        report["finetune"] = finetune(args.finetune, args, ensemble, results, rows, scored, cache)

    print(f"\nbidsqc shift benchmark: model {ensemble.model_id}, seed {args.seed}; clean scans unlike the "
          "training study, each with a mild and a severe artifact")
    header = (f"{'group':<15}{'clean':>6}{'fail':>7}{'uncert':>8}{'AUC sev':>9}{'AUC mild':>9}{'sev fail':>9}"
              f"{'top-1':>7}   15 % bad: clean failed / bad failed, dataset-relative (participant)")
    print(header)
    for group, g in report["groups"].items():
        rel = g["dataset_relative"]["realistic"]
        print(f"{group:<15}{g['n_clean']:>6}{g['clean_fail_rate']:>7.2f}{g['clean_uncertain_rate']:>8.2f}"
              f"{g['auc_clean_vs_severe']:>9.3f}{g['auc_clean_vs_mild']:>9.3f}{g['severe_failed']:>9.2f}"
              f"{g['artifact_top1_severe']:>7.2f}   {rel['clean_failed']:.2f} / {rel['bad_failed']:.2f} "
              f"({rel['participant_clean_failed']:.2f} / {rel['participant_bad_failed']:.2f})"
              + ("" if g["n_clean"] >= MIN_ACQUISITION_SCANS else
                 f" (fewer than {MIN_ACQUISITION_SCANS} clean scans: participant verdicts)"))
    p = report["pooled"]
    worst_fail = max(g["clean_fail_rate"] for g in report["groups"].values())
    worst_unc = max(g["clean_uncertain_rate"] for g in report["groups"].values())
    met = {"worst group clean failed": (worst_fail, "<=", TARGETS["clean_fail_rate"]),
           "worst group clean uncertain": (worst_unc, "<=", TARGETS["clean_uncertain_rate"]),
           "pooled AUC clean vs severe": (p["auc_clean_vs_severe"], ">=", TARGETS["auc_clean_vs_severe"]),
           "pooled AUC clean vs mild": (p["auc_clean_vs_mild"], ">=", TARGETS["auc_clean_vs_mild"]),
           "pooled severe failed": (p["severe_failed"], ">=", TARGETS["severe_failed"]),
           "pooled artifact top-1 (severe)": (p["artifact_top1_severe"], ">=", TARGETS["artifact_top1_severe"])}
    for name, (value, op, target) in met.items():
        ok = value >= target if op == ">=" else value <= target
        print(f"  {name:<34}{value:>7}   target {op} {target}   {'met' if ok else 'MISSED'}")
    r = report["oasis1_retest"]
    print(f"  OASIS-1 rescans with the same verdict: {r['same_verdict']} of {r['pairs']}")
    print("clean ranges per group (p_bad_network and detector scores, min-max):")
    for group, g in report["groups"].items():
        print(f"  {group:<15}" + "  ".join(f"{k} {v[0]:g}-{v[1]:g}" for k, v in g["clean_ranges"].items()))
    if "finetune" in report:
        f = report["finetune"]
        print(f"fine-tuned on {f['n_rated_scans']} rated {f['group']} scans ({f['rated_volumes']} volumes with their "
              f"simulated bad versions, {f['epochs']} epochs, {f['minutes']} min on this machine), "
              f"{f['group']}'s held-out scans:")
        for when in ("before", "after"):
            g = f[when]
            print(f"  {when:<7} clean failed {g['clean_fail_rate']:.2f}, uncertain {g['clean_uncertain_rate']:.2f}, "
                  f"AUC severe {g['auc_clean_vs_severe']:.3f}, mild {g['auc_clean_vs_mild']:.3f}, severe failed "
                  f"{g['severe_failed']:.2f}")
    big = [g for g in report["groups"].values() if g["n_clean"] >= MIN_ACQUISITION_SCANS]
    weighted = {key: round(sum(g["dataset_relative"]["realistic"][key] * g["n_clean"] for g in big)
                           / max(1, sum(g["n_clean"] for g in big)), 3)
                for key in ("clean_failed", "bad_failed", "participant_clean_failed", "participant_bad_failed")}
    report["dataset_relative_pooled"] = dict(weighted, groups=len(big))
    print(f"  dataset-relative, {len(big)} groups of >= {MIN_ACQUISITION_SCANS} clean scans, 15 % bad: clean failed "
          f"{weighted['clean_failed']:.3f}, bad failed {weighted['bad_failed']:.3f} (participant verdicts: "
          f"{weighted['participant_clean_failed']:.3f}, {weighted['participant_bad_failed']:.3f})")
    print(f"HEADLINE shift: clean failed {p['clean_fail_rate']:.3f} (worst group {worst_fail:.2f}), uncertain "
          f"{p['clean_uncertain_rate']:.3f} (worst group {worst_unc:.2f}), AUC severe {p['auc_clean_vs_severe']:.3f}, "
          f"mild {p['auc_clean_vs_mild']:.3f}, severe failed {p['severe_failed']:.2f}, top-1 "
          f"{p['artifact_top1_severe']:.2f} over {len(report['groups'])} groups; dataset-relative (15 % bad) clean "
          f"failed {weighted['clean_failed']:.3f}, bad failed {weighted['bad_failed']:.3f}")
    out = args.out / "bench_shift.json"
    write_json_atomic(out, {"report": report, "details": [
        {k: v for k, v in r.items() if k not in ("params",)} for r in results]})
    print(f"full report: {out}")
    if args.update_card:
        store_in_card(args.model, report)
        print(f"figures stored in {Path(args.model) / 'model_card.json'}")


if __name__ == "__main__":
    main()
