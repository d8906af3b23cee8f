"""Command-line parsers (argparse only): ``bidsqc``, ``bidsqc-train``, ``bidsqc-simulate``."""

import argparse
from pathlib import Path

from .. import __version__


def _label(value):
    """Participant/session label with or without its ``sub-``/``ses-`` prefix; BIDS labels are
    alphanumeric, so nothing else (a path, a wildcard) gets near a file name."""
    import re

    for prefix in ("sub-", "ses-"):
        if value.startswith(prefix):
            value = value[len(prefix):]
            break
    if not re.fullmatch(r"[A-Za-z0-9]+", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a BIDS label (letters and digits only)")
    return value


def get_parser():
    parser = argparse.ArgumentParser(
        prog="bidsqc",
        description="Automated quality control of T1-weighted MRI with a 3D CNN ensemble (BIDS-App).",
        epilog="Exit codes: 0 when at least one scan was rated (scans that failed to process get a row "
               "with qc=error); 1 when nothing could be processed; 2 for command-line or dataset errors.")
    parser.add_argument("bids_dir", nargs="?", type=Path, help="the root of the BIDS dataset")
    parser.add_argument("output_dir", nargs="?", type=Path, help="where the derivatives go")
    parser.add_argument("analysis_level", nargs="?", choices=["participant", "group"],
                        help="participant: rate each T1w; group: aggregate the participant tables")
    parser.add_argument("--version", action="version", version=f"bidsqc {__version__}")
    parser.add_argument("--demo", metavar="OUT", type=Path,
                        help="build a small demo BIDS dataset in OUT (no network needed), run both "
                             "levels on it with the shipped ensemble and print the table")
    filters = parser.add_argument_group("selecting scans")
    filters.add_argument("--participant-label", "--participant_label", nargs="+", type=_label,
                         dest="participant_label", metavar="LABEL",
                         help="participants to process (with or without sub-); default: all")
    filters.add_argument("--session-label", "--session_label", nargs="+", type=_label, dest="session_label",
                         metavar="LABEL", help="sessions to process (with or without ses-); default: all")
    filters.add_argument("--bids-filter-file", "--bids_filter_file", type=Path, dest="bids_filter_file",
                         metavar="FILE", help='JSON of pybids filters for the "t1w" query, e.g. '
                                              '{"t1w": {"acquisition": "mprage"}}')
    filters.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                         dest="skip_bids_validation", help="index the dataset without validating file names")
    perf = parser.add_argument_group("execution")
    perf.add_argument("-w", "--work-dir", type=Path, dest="work_dir",
                      help="Nipype working folder (default: a temporary folder, removed afterwards)")
    perf.add_argument("--nprocs", "--n-cpus", type=int, default=None, dest="nprocs",
                      help="maximum processes (MultiProc); default: all CPUs")
    perf.add_argument("--omp-nthreads", type=int, default=None, dest="omp_nthreads",
                      help="threads per process for registration and the network; default: 1 when "
                           "--nprocs > 1, else all CPUs")
    perf.add_argument("--mem-gb", "--mem_gb", type=float, default=None, dest="mem_gb",
                      help="memory limit for MultiProc scheduling (GB)")
    perf.add_argument("--plugin", default=None,
                      help="Nipype execution plugin: Linear, MultiProc, SLURM, SGE, PBS, ... "
                           "(default: MultiProc when --nprocs > 1, else Linear)")
    perf.add_argument("--plugin-args", "--plugin_args", default=None, dest="plugin_args",
                      help="JSON of plugin arguments, e.g. '{\"sbatch_args\": \"-p short\"}'")
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, default=None,
                       help="ensemble folder (default: the shipped ensemble)")
    model.add_argument("--mc-samples", type=int, default=None, dest="mc_samples",
                       help="Monte Carlo dropout passes per fold model (default: the model card's)")
    model.add_argument("--threshold", type=float, default=None,
                       help="p_bad at or above which a scan fails (default: the model card's)")
    model.add_argument("--template", default=None,
                       help="TemplateFlow template ID for registration (default: the model card's, the one "
                            "the ensemble was trained and measured with: MNI152NLin6Asym for the shipped "
                            "ensemble, whose copy ships with bidsqc); another template gives ratings that "
                            "were never measured. When TemplateFlow cannot deliver it, bidsqc falls back to "
                            "the shipped MNI152NLin6Asym, then nilearn's MNI152, with a warning")
    parser.add_argument("--no-reports", action="store_true", dest="no_reports",
                        help="write no HTML reports: the participant level's page and thumbnail per scan "
                             "(<source entities>_desc-qc_T1w.html, _desc-thumbnail_T1w.png) and the group "
                             "level's group_desc-qc_T1w.html")
    parser.add_argument("--force", action="store_true",
                        help="re-rate scans whose outputs already match the input, model card, bidsqc version "
                             "and rating settings")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    return parser


def get_train_parser():
    parser = argparse.ArgumentParser(
        prog="bidsqc-train",
        description="Train (or fine-tune) a k-fold bidsqc ensemble on rated and/or simulated scans.")
    src = parser.add_argument_group("training scans (at least one)")
    src.add_argument("--labels", type=Path, help="TSV with source_file, rating (good/bad), optional artifact, "
                                                 "subject; good scans also get simulated artifact versions")
    src.add_argument("--labels-root", type=Path, default=None, dest="labels_root",
                     help="folder the --labels TSV's relative source_file paths start from (default: the TSV's "
                          "folder); the BIDS folder for ratings exported from bidsqc's reports")
    src.add_argument("--scans", type=Path, help="folder of presumed-good NIfTI scans (artifacts simulated)")
    parser.add_argument("--out", type=Path, required=True, help="ensemble folder to write")
    parser.add_argument("--cache", type=Path, default=None,
                        help="training-set cache (default: OUT/../bidsqc-cache); reused and resumed")
    parser.add_argument("--template", default="MNI152NLin6Asym",
                        help="TemplateFlow template ID; must be available (no fallback in training)")
    parser.add_argument("--folds", type=int, default=10, help="k of the stratified group k-fold (default 10)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--mixup-alpha", type=float, default=0.3, help="0 turns mixup off")
    parser.add_argument("--loss", choices=["bce", "dice"], default="bce")
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--dense-dropout", type=float, default=0.1)
    parser.add_argument("--grid", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="model input grid (default 64 76 64)")
    parser.add_argument("--spacing", type=float, default=None, help="grid spacing in mm (default 2.5)")
    parser.add_argument("--clean-variants", type=int, default=2,
                        help="clean contrast/bias/resolution variations per good scan")
    parser.add_argument("--raw-scan-variation", action="store_true",
                        help="clean variations also carry raw-scan noise and sharpening, and stripped scans "
                             "get layered scalp tissue (raw heads rated cleaner; see docs/model.md: not the "
                             "shipped recipe, spike and ghosting detection fell)")
    parser.add_argument("--spatial-augment", action="store_true",
                        help="random affine augmentation on the model grid (rotation up to 10 degrees, "
                             "scale 10 %%, shift 2 voxels), so registration's residual misalignment and "
                             "head shape do not read as artifacts")
    parser.add_argument("--shift-variation", type=float, default=0.0, metavar="P",
                        help="make this share of the training volumes (0-1; the subjects' originals stay), clean "
                             "and with artifacts, look like another study's scan first: one or two of voxel size "
                             "(1.1-2.2 mm, or one axis up to 3 mm), T1 contrast, 1.5 T noise, atrophy, field of "
                             "view, intensity scale and datatype (bidsqc.artifacts.shift; built into the cache); "
                             "the detectors are calibrated on the same volumes")
    parser.add_argument("--registration-jitter", type=float, default=0.0, metavar="P",
                        help="move this share of the training volumes (0-1; the subjects' originals stay) "
                             "inside their one resampling at registration, so no volume is interpolated twice "
                             "(built into the cache): rotation up to 10 degrees and shift 2 voxels as with "
                             "--spatial-augment, but zooms of 5 %% at most, since a zoom changes the texture")
    parser.add_argument("--mc-samples", type=int, default=4, help="MC passes stored as the default")
    parser.add_argument("--exclude-artifacts", type=lambda v: [a for a in v.split(",") if a], default=[],
                        metavar="TYPE[,TYPE]",
                        help="artifact types the network does not train on (their simulated volumes are "
                             "cached but left out), e.g. spike,ghosting, which native-space detectors cover")
    parser.add_argument("--detectors-only", action="store_true",
                        help="do not train: calibrate the native-space detectors (spike, ghosting, thick "
                             "slices, bad slices, noise) and fit the artifact naming on the given scans, and "
                             "store both in the model card of the ensemble at --out")
    parser.add_argument("--no-detectors", action="store_true",
                        help="do not calibrate the native-space detectors or fit the artifact naming after "
                             "training")
    parser.add_argument("--exclude-mild", action="store_true",
                        help="train on clean and severe volumes only (mild ones are cached but left out)")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="fine-tune this ensemble (its grid and artifact types are kept)")
    parser.add_argument("--holdout", type=Path, default=None,
                        help="TSV of held-out scans to record in the model card (never trained on)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nprocs", type=int, default=2, help="processes for building the training set")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def get_simulate_parser():
    from ..artifacts import ARTIFACTS, SEVERITIES

    parser = argparse.ArgumentParser(
        prog="bidsqc-simulate",
        description="Corrupt a T1w image with a simulated acquisition artifact (in native space).")
    parser.add_argument("in_file", type=Path)
    parser.add_argument("out_file", type=Path)
    parser.add_argument("--artifact", required=True, choices=ARTIFACTS)
    parser.add_argument("--severity", default="severe", choices=SEVERITIES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", action="store_true",
                        help="with --artifact missing_coverage: cut the slab off the image (a field of view that "
                             "ends inside the head, as a scanner writes it) instead of zero-filling it")
    return parser
