"""``bidsqc-simulate IN OUT --artifact A --severity S --seed N``: corrupt a T1w image."""

import json
import sys

import nibabel as nib
import numpy as np

from .parser import get_simulate_parser


def main(argv=None):
    args = get_simulate_parser().parse_args(argv)
    from ..artifacts import simulate
    from ..preprocessing.conform import ConformError, conform, load_image

    try:
        img, _ = conform(load_image(args.in_file), name=str(args.in_file))
        out, params = simulate(img, args.artifact, args.severity, np.random.default_rng(args.seed), crop=args.crop)
    except (ConformError, ValueError) as exc:
        print(f"bidsqc-simulate: error: {exc}", file=sys.stderr)
        return 2
    args.out_file.parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(args.out_file))
    print(json.dumps({"artifact": args.artifact, "severity": args.severity, "seed": args.seed,
                      "params": params}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
