"""``bidsqc-train``: train or fine-tune an ensemble (see bidsqc.training.folds.train_ensemble)."""

import csv
import logging
import sys

from .parser import get_train_parser


def main(argv=None):
    args = get_train_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("nipype").setLevel(logging.WARNING)
    from ..artifacts.simulators import ARTIFACTS
    from ..preprocessing.pipeline import DEFAULT_SHAPE, DEFAULT_SPACING_MM
    from ..scores import DETECTORS
    from ..training.calibrate import add_detectors
    from ..training.dataset import read_labels, scans_from_folder
    from ..training.folds import train_ensemble

    unknown = sorted(set(args.exclude_artifacts) - set(ARTIFACTS))
    if unknown:
        print(f"bidsqc-train: error: --exclude-artifacts: unknown artifact type(s) {', '.join(unknown)}; "
              f"known: {', '.join(ARTIFACTS)}", file=sys.stderr)
        return 2
    for option in ("registration_jitter", "shift_variation"):
        if not 0.0 <= getattr(args, option) <= 1.0:
            print(f"bidsqc-train: error: --{option.replace('_', '-')} must be between 0 and 1, "
                  f"got {getattr(args, option)}", file=sys.stderr)
            return 2
    if not args.labels and not args.scans:
        print("bidsqc-train: error: give --labels TSV and/or --scans DIR", file=sys.stderr)
        return 2
    try:
        scans = (read_labels(args.labels, root=args.labels_root) if args.labels else []) + \
                (scans_from_folder(args.scans) if args.scans else [])
    except (OSError, ValueError) as exc:
        print(f"bidsqc-train: error: {exc}", file=sys.stderr)
        return 2
    holdout = None
    if args.holdout:
        with open(args.holdout, newline="") as handle:
            holdout = [dict(r) for r in csv.DictReader(handle, delimiter="\t")]
    cache = args.cache or args.out.parent / "bidsqc-cache"
    if args.detectors_only:
        try:
            card = add_detectors(args.out, scans, cache, seed=args.seed, n_clean_variants=args.clean_variants,
                                 nprocs=args.nprocs)
        except (OSError, ValueError) as exc:
            print(f"bidsqc-train: error: {exc}", file=sys.stderr)
            return 2
        print(f"detectors calibrated into {args.out}: " + ", ".join(
            f"{name} threshold {card['detectors'][name]['threshold']}" for name in DETECTORS))
        naming = card["naming"]
        by_severity = ", ".join(f"{k} {v}" for k, v in naming.get("cv_top1_by_severity", {}).items())
        print(f"artifact naming: top-1 {naming['cv_top1']} (grouped CV on {naming['n_volumes']} training volumes"
              + (f"; {by_severity}" if by_severity else "") + f"; the network's heads alone {naming['network_top1']})")
        return 0
    train_ensemble(scans, args.out, cache, template_id=args.template, folds=args.folds, epochs=args.epochs,
                   batch_size=args.batch_size, mixup_alpha=args.mixup_alpha, loss=args.loss,
                   learning_rate=args.learning_rate, init_from=args.init_from,
                   n_clean_variants=args.clean_variants, seed=args.seed, nprocs=args.nprocs,
                   mc_samples=args.mc_samples, levels=args.levels, base_filters=args.base_filters,
                   dropout=args.dropout, dense_dropout=args.dense_dropout,
                   spacing_mm=args.spacing or DEFAULT_SPACING_MM, grid_shape=tuple(args.grid or DEFAULT_SHAPE),
                   holdout=holdout, exclude_mild=args.exclude_mild, raw_scan_variation=args.raw_scan_variation,
                   exclude_artifacts=tuple(args.exclude_artifacts), detectors=not args.no_detectors,
                   spatial_augment=args.spatial_augment, registration_jitter=args.registration_jitter,
                   shift_variation=args.shift_variation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
