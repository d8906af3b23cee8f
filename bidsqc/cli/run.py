"""``bidsqc`` entry point: parse -> check -> build the workflow -> run -> write tables."""

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .. import __version__
from .parser import get_parser

LOGGER = logging.getLogger("bidsqc")


class UsageError(Exception):
    """A command-line or dataset problem: one line on stderr, exit code 2."""


def setup_logging(verbose):
    """bidsqc logs progress at INFO (-v) and summaries at WARNING; Nipype's own log is
    quiet unless -v (workflow) or -vv (debug). Only bidsqc's own handler is added or
    touched: handlers that others put on the logger (pytest's capture, an embedding
    pipeline's) are left as they are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    own = [h for h in LOGGER.handlers if getattr(h, "bidsqc_cli", False)]
    if not own:
        handler = logging.StreamHandler()
        handler.bidsqc_cli = True
        handler.setFormatter(logging.Formatter("%(asctime)s bidsqc %(levelname)s: %(message)s", "%H:%M:%S"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
        own = [handler]
    for handler in own:  # main() may run many times in one process (tests, embedding): the current stderr
        handler.stream = sys.stderr  # (not setStream: it flushes the old stream, which may be closed by now)
    LOGGER.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    level = "DEBUG" if verbose > 1 else "INFO" if verbose else "WARNING"
    os.environ["BIDSQC_NIPYPE_LEVEL"] = level  # read by bidsqc.interfaces in the worker processes
    nipype_config.update_config({"logging": {"workflow_level": level, "interface_level": "WARNING",
                                             "utils_level": "WARNING"}})
    nipype_logging.update_logging(nipype_config)


def check_dirs(args):
    """Check bids_dir and output_dir; raise UsageError with a one-line message."""
    bids_dir = args.bids_dir.resolve()
    if not bids_dir.exists():
        raise UsageError(f"bids_dir {args.bids_dir} does not exist")
    if not bids_dir.is_dir():
        raise UsageError(f"bids_dir {args.bids_dir} is not a folder")
    if not args.skip_bids_validation and not (bids_dir / "dataset_description.json").is_file():
        raise UsageError(f"bids_dir {args.bids_dir} is not a BIDS dataset: it has no dataset_description.json "
                         "(add one, or pass --skip-bids-validation)")
    output_dir = args.output_dir.resolve()
    if output_dir == bids_dir or bids_dir in output_dir.parents:
        raise UsageError(f"output_dir {args.output_dir} is inside bids_dir {args.bids_dir}; choose a folder "
                         "outside the raw dataset (e.g. <bids_dir>/../derivatives/bidsqc is fine, "
                         "<bids_dir>/derivatives/bidsqc is not)")
    return bids_dir, output_dir


def check_writable(output_dir, what="output_dir"):
    """Create ``output_dir`` and check that a file can be written there; UsageError otherwise."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".bidsqc-write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {output_dir} is not writable ({exc.strerror or exc}); choose another "
                         "folder or fix its permissions") from exc


#: folders of a BIDS dataset that hold no raw scans to rate
NOT_RAW = {"derivatives", "sourcedata", "code", "stimuli"}


def skipped_t1w(bids_dir, found, subjects=None, reason_else="the BIDS index (pybids) does not hold it"):
    """Files under ``bids_dir`` that look like T1w images (``*T1w*.nii[.gz]``, outside
    derivatives, sourcedata, code and hidden folders) but are not among ``found`` (paths
    relative to ``bids_dir``): [(path, reason)]. ``subjects``: only those of these
    participants (the --participant-label selection); ``reason_else``: the reason given where
    the name itself shows none."""
    import re

    found = set(found)
    out = []
    for path in sorted(bids_dir.rglob("*T1w*.nii*")):
        rel = path.relative_to(bids_dir)
        if rel.parts[0] in NOT_RAW or any(p.startswith(".") for p in rel.parts) or str(rel) in found:
            continue
        if not re.search(r"\.nii(\.gz)?$", path.name):
            continue
        subject = rel.parts[0][4:] if rel.parts[0].startswith("sub-") else None
        if subjects and subject not in subjects:
            continue
        labels = [part.split("-", 1) for part in re.sub(r"\.nii(\.gz)?$", "", path.name).split("_")[:-1]]
        bad = [f"{k}-{v}" for k, v in (p for p in labels if len(p) == 2) if not re.fullmatch(r"[A-Za-z0-9]+", v)]
        if bad:
            reason = (f"entity label {', '.join(repr(b) for b in bad)} is not alphanumeric, so the BIDS index "
                      "(pybids) leaves the file out; rename it")
        elif len(rel.parts) < 3 or rel.parts[-2] != "anat":
            reason = "not in a sub-<label>[/ses-<label>]/anat folder"
        elif not path.name.endswith(("_T1w.nii", "_T1w.nii.gz")):
            reason = "its name does not end in _T1w.nii[.gz]"
        else:
            reason = reason_else
        out.append((str(rel), reason))
    return out


def find_t1w(args, bids_dir):
    """T1w scans as dicts (path, source_file, subject); raise UsageError when none match."""
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    try:
        layout = BIDSLayout(str(bids_dir), validate=not args.skip_bids_validation, derivatives=False)
    except (BIDSValidationError, ValueError) as exc:
        raise UsageError(f"bids_dir {args.bids_dir} is not a BIDS dataset ({str(exc).splitlines()[0]})") from exc
    subjects = sorted(layout.get_subjects())
    if args.participant_label:
        missing = [s for s in args.participant_label if s not in subjects]
        if missing:
            raise UsageError(f"participant(s) {', '.join('sub-' + s for s in missing)} not found in "
                             f"{args.bids_dir}; found: {', '.join('sub-' + s for s in subjects) or 'none'}")
    query = {"suffix": "T1w", "extension": [".nii", ".nii.gz"], "datatype": "anat"}
    if args.bids_filter_file:
        try:
            filters = json.loads(Path(args.bids_filter_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"--bids-filter-file {args.bids_filter_file}: cannot read JSON ({exc})") from exc
        query.update(filters.get("t1w", {}))
    if args.participant_label:
        query["subject"] = args.participant_label
    if args.session_label:
        query["session"] = args.session_label
    files = layout.get(return_type="file", **query)
    # files the selection (labels, sessions, filter file) leaves out are left out on purpose: listed
    # are only those the BIDS index itself does not hold as anatomical T1w scans
    indexed = layout.get(return_type="file", suffix="T1w", extension=[".nii", ".nii.gz"], datatype="anat")
    args.skipped = skipped_t1w(bids_dir, [os.path.relpath(f, bids_dir) for f in indexed], args.participant_label)
    if not files:
        raise UsageError(f"no T1w scans found in {args.bids_dir} for the selection "
                         f"{json.dumps({k: v for k, v in query.items() if k != 'extension'})}")
    for rel, reason in args.skipped:
        LOGGER.warning("skipped %s: %s", rel, reason)
    scans = []
    for path in sorted(files):
        source_file = os.path.relpath(path, bids_dir)
        subject = Path(source_file).parts[0][4:]
        scans.append({"path": str(path), "source_file": source_file, "subject": subject,
                      "acquisition": acquisition_metadata(layout, path)})
    return scans


#: the sidecar fields recorded with each rating: the protocol (bidsqc.model.relative groups scans by
#: make, model and field strength) and the sequence
ACQUISITION_FIELDS = ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength", "PulseSequenceType",
                      "SequenceName", "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle")


def acquisition_metadata(layout, path):
    """The scan's ACQUISITION_FIELDS from its BIDS sidecar (inherited ones included); {} where
    there is none or it cannot be read (a broken sidecar never stops a rating)."""
    try:
        metadata = layout.get_metadata(path)
    except Exception as exc:  # noqa: BLE001 (pybids raises many kinds for a broken JSON)
        LOGGER.warning("%s: cannot read its sidecar (%s); rated without acquisition metadata", path,
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return {}
    return {k: metadata[k] for k in ACQUISITION_FIELDS if isinstance(metadata.get(k), (str, int, float))}


def plugin_settings(args):
    nprocs = args.nprocs or os.cpu_count() or 1
    plugin = args.plugin or ("MultiProc" if nprocs > 1 else "Linear")
    plugin_args = {}
    if args.plugin_args:
        try:
            plugin_args = json.loads(args.plugin_args)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--plugin-args is not valid JSON ({exc})") from exc
    if plugin == "MultiProc":
        plugin_args.setdefault("n_procs", nprocs)
        if args.mem_gb:
            plugin_args.setdefault("memory_gb", args.mem_gb)
        plugin_args.setdefault("raise_insufficient", False)
        # Workers start from a clean server process, not by forking this one: forking a
        # process that already initialised TensorFlow (an embedding pipeline, a test
        # session) deadlocks the workers.
        plugin_args.setdefault("mp_context", "forkserver")
    if plugin in ("SLURM", "SLURMGraph", "SGE", "SGEGraph", "PBS", "PBSGraph", "LSF") and "LOGNAME" not in os.environ:
        # Nipype's scheduler plugins ask the queue for $LOGNAME's jobs, which containers and batch
        # shells often leave unset
        import getpass

        os.environ["LOGNAME"] = getpass.getuser()
    omp = args.omp_nthreads or (1 if plugin == "MultiProc" and nprocs > 1 else nprocs)
    for var in ("OMP_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[var] = str(omp)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    return plugin, plugin_args, omp


def run_participant(args):
    from ..model.card import (ModelCardError, ensemble_checksum, file_checksum, rating_checksum, read_card,
                              verify_ensemble_folder)
    from ..model.ensemble import DEFAULT_MODEL_DIR
    from ..outputs import derivative_paths, write_dataset_description, write_subject_table

    bids_dir, output_dir = check_dirs(args)
    model_dir = (args.model or DEFAULT_MODEL_DIR).resolve()
    try:
        card = read_card(model_dir)
        verify_ensemble_folder(model_dir, card)
        checksum = ensemble_checksum(model_dir, card)
    except (ModelCardError, OSError) as exc:
        raise UsageError(f"--model: {exc}") from exc
    if args.mc_samples is not None and args.mc_samples < 1:
        raise UsageError("--mc-samples must be at least 1")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError("--threshold must be between 0 and 1")
    scans = find_t1w(args, bids_dir)
    plugin, plugin_args, omp = plugin_settings(args)
    trained_on = card["input"]["template"]
    if args.template is None:
        args.template = trained_on
    elif args.template != trained_on:
        LOGGER.warning("--template %s: model %s was trained and measured on %s; its ratings with another "
                       "template were never measured", args.template, card["model_id"], trained_on)
    spacing = float(card["input"].get("spacing_mm", 2.0))
    res_label = f"{spacing:g}".replace(".", "p")
    settings = {"template": args.template, "mc_samples": args.mc_samples, "threshold": args.threshold,
                "plugin": plugin, "nprocs": plugin_args.get("n_procs"), "omp_nthreads": omp}
    rating = rating_checksum(checksum, card, {k: settings[k] for k in ("template", "mc_samples", "threshold")},
                             __version__)
    provenance = {"model_id": card["model_id"], "model_checksum": checksum, "rating_checksum": rating,
                  "model_dir": str(model_dir), "template": args.template, "res_label": res_label,
                  "settings": settings}

    todo = []
    for scan in scans:
        try:
            scan["input_sha256"] = file_checksum(scan["path"])
        except OSError as exc:  # a symlink loop, a dangling link, no permission: its error row says so
            scan["input_sha256"] = None
            LOGGER.warning("%s: cannot read the file (%s)", scan["source_file"], exc.strerror or exc)
        # The template ID of an earlier run may differ (fallback): look for any QC JSON of the scan.
        paths = derivative_paths(output_dir, scan["source_file"], args.template, res_label)
        qc_json = paths["json"]
        if qc_json.exists() and not args.force:
            try:
                old = json.loads(qc_json.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            report_missing = not args.no_reports and not paths["report"].exists()
            if old.get("input_sha256") == scan["input_sha256"] and old.get("qc") != "error":
                if report_missing:
                    LOGGER.info("%s: rated again to write its report", scan["source_file"])
                elif (old.get("provenance") or {}).get("rating_checksum") == rating:
                    LOGGER.info("%s: already rated with model %s and these settings (use --force to redo)",
                                scan["source_file"], card["model_id"])
                    continue
                LOGGER.info("%s: rated again: its rating was made with another model card, bidsqc version "
                            "or settings", scan["source_file"])
        todo.append(scan)
    check_writable(output_dir)
    if args.work_dir:
        check_writable(args.work_dir.resolve(), what="-w/--work-dir")
    write_dataset_description(output_dir, card["model_id"], bids_dir)
    LOGGER.warning("bidsqc %s: %d T1w scan(s) found, %d to rate with model %s (%s, %d process(es))",
                   __version__, len(scans), len(todo), card["model_id"], plugin, plugin_args.get("n_procs", 1))

    started = time.time()
    if todo:
        _run_workflow(args, todo, output_dir, model_dir, provenance, plugin, plugin_args)
    rows = []
    for subject in sorted({s["subject"] for s in scans}):
        _, subject_rows = write_subject_table(output_dir, subject)
        rows += [r for r in subject_rows if any(r["source_file"] == s["source_file"] for s in scans)]
    n_error = sum(r["qc"] == "error" for r in rows)
    skipped = getattr(args, "skipped", [])
    LOGGER.warning("rated %d scan(s) in %.1f s: %d pass, %d fail, %d uncertain, %d error; tables in %s%s",
                   len(rows), time.time() - started, sum(r["qc"] == "pass" for r in rows),
                   sum(r["qc"] == "fail" for r in rows), sum(r["qc"] == "uncertain" for r in rows),
                   n_error, output_dir,
                   f"; {len(skipped)} file(s) that look like T1w scans skipped (listed above)" if skipped else "")
    for row in rows:
        if row["qc"] == "error":
            print(f"bidsqc: {row['source_file']}: {row['error']}", file=sys.stderr)
    return 0 if rows and n_error < len(rows) else 1


def _run_workflow(args, todo, output_dir, model_dir, provenance, plugin, plugin_args):
    from nipype import config as nipype_config

    from ..outputs import atomic_write_text, derivative_paths
    from ..workflows.base import init_bidsqc_wf

    work_dir = args.work_dir.resolve() if args.work_dir else Path(tempfile.mkdtemp(prefix="bidsqc_work_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    nipype_config.update_config({"execution": {"crashdump_dir": str(work_dir / "crash"),
                                               "stop_on_first_crash": False, "crashfile_format": "txt",
                                               "hash_method": "content", "remove_unnecessary_outputs": False},
                                 "monitoring": {"enabled": False}})
    wf = init_bidsqc_wf(todo, output_dir, model_dir, template=args.template, mc_samples=args.mc_samples or 0,
                        threshold=-1.0 if args.threshold is None else args.threshold,
                        provenance=provenance, work_dir=work_dir, reports=not args.no_reports)
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except Exception as exc:  # nipype raises after running every branch it could
        LOGGER.error("some workflow nodes crashed (%s); crash files in %s", str(exc).splitlines()[0],
                     work_dir / "crash")
    # A scan whose branch crashed outside bidsqc's error capture still gets its error row.
    for scan in todo:
        qc_json = derivative_paths(output_dir, scan["source_file"], args.template,
                                   provenance["res_label"])["json"]
        fresh = False
        if qc_json.exists():
            try:
                fresh = json.loads(qc_json.read_text()).get("input_sha256") == scan["input_sha256"]
            except (OSError, json.JSONDecodeError):
                fresh = False
        if not fresh:
            record = {"source_file": scan["source_file"], "qc": "error",
                      "error": "workflow: no result was written for this scan (a node crashed); see "
                               f"{work_dir / 'crash'}",
                      "model_id": provenance["model_id"], "input_sha256": scan["input_sha256"],
                      "provenance": provenance}
            atomic_write_text(qc_json, json.dumps(record, indent=2) + "\n")
    if not args.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)


def run_group(args):
    from ..outputs import atomic_write_text, write_group_outputs

    bids_dir, output_dir = check_dirs(args)
    if not output_dir.is_dir() or not list(output_dir.glob("sub-*/sub-*_desc-qc_T1w.tsv")):
        raise UsageError(f"output_dir {args.output_dir} has no participant tables; run the participant "
                         "level first")
    check_writable(output_dir)
    from ..model.relative import MIN_ACQUISITION_SCANS

    rows, excluded = write_group_outputs(output_dir)
    skipped = skipped_t1w(bids_dir, [r["source_file"] for r in rows], reason_else=(
        "no participant-level row: outside the selection the participant level ran with, or not in the "
        "BIDS index")) if bids_dir.is_dir() else []
    atomic_write_text(output_dir / "group_desc-qc_skipped.tsv", "path\treason\n" + "".join(
        f"{path}\t{reason}\n" for path, reason in skipped))
    for path, reason in skipped:
        LOGGER.warning("group: not rated: %s (%s)", path, reason)
    if not args.no_reports:
        from ..reports.group import write_group_report

        LOGGER.warning("group: report in %s", write_group_report(output_dir, rows))
    sizes = {row["acquisition"]: row["n_acquisition"] for row in rows if row.get("qc") != "error"}
    relative = sum(n for n in sizes.values() if n >= MIN_ACQUISITION_SCANS)
    LOGGER.warning("group: %d scan(s) in %s, %d failed (listed in %s); %d scan(s) judged against their own "
                   "acquisition (%d of %d acquisition(s) with at least %d rated scans), the rest by their "
                   "participant verdict; %d file(s) that look like T1w scans not rated (%s)", len(rows),
                   output_dir / "group_desc-qc_T1w.tsv", len(excluded), output_dir / "group_desc-qc_exclude.txt",
                   relative, sum(n >= MIN_ACQUISITION_SCANS for n in sizes.values()), len(sizes),
                   MIN_ACQUISITION_SCANS, len(skipped), output_dir / "group_desc-qc_skipped.tsv")
    return 0 if rows else 1


def main(argv=None):
    """The BIDS-App levels (participant, group); the ``bidsqc`` command (bidsqc.cli.app) also runs the demo."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.demo:
        parser.error("--demo is run by the bidsqc command (bidsqc.cli.app.main), not by bidsqc.cli.run")
    setup_logging(args.verbose)
    try:
        if not (args.bids_dir and args.output_dir and args.analysis_level):
            parser.error("bids_dir, output_dir and analysis_level are required (or use --demo OUT)")
        if args.analysis_level == "group":
            return run_group(args)
        return run_participant(args)
    except UsageError as exc:
        print(f"bidsqc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
