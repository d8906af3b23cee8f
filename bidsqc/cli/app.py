"""The ``bidsqc`` command: the BIDS-App levels (bidsqc.cli.run) or, with ``--demo OUT``, the demo
(bidsqc.cli.demo), which itself runs both levels through bidsqc.cli.run."""

import sys

from .parser import get_parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if not args.demo:
        from .run import main as run_main

        return run_main(argv)
    from .demo import run_demo
    from .run import UsageError, setup_logging

    setup_logging(args.verbose)
    try:
        return run_demo(args.demo, args)
    except UsageError as exc:
        print(f"bidsqc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
