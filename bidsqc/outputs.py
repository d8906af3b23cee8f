"""BIDS-Derivatives outputs: atomic writes, per-scan JSON, per-subject and group tables.

Every file is written to a temporary name in its destination folder and renamed,
so an interrupted run never leaves a half-written output, and concurrent array
jobs (one participant each) can share one output folder.
"""

import csv
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .scores import SCORE_COLUMNS


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: mode of every output file: what a plain open() would give under the user's umask (a temporary
#: file is created 0600, which would keep a shared study folder's outputs from the rest of the lab)
FILE_MODE = 0o666 & ~_umask()

FIRST_COLUMNS = ["participant_id", "session_id", "run_id", "acq_id", "source_file", "p_bad",
                 "p_bad_std", "qc"]
LAST_COLUMNS = ["reg_quality", "voxel_size_mm", "dims", "runtime_s", "error"]
#: the table's columns from the BIDS sidecar (the protocol a scan's dataset-relative verdict groups by)
ACQUISITION_COLUMNS = {"manufacturer": "Manufacturer", "model_name": "ManufacturersModelName",
                       "field_strength": "MagneticFieldStrength"}
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "run", "echo", "part")


@contextmanager
def _atomic(path):
    """Yield a temporary path beside ``path`` to write; on success it gets the user's file mode
    and is renamed to ``path``, on any failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    with _atomic(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(text)


def atomic_write_bytes(path, data):
    """Write bytes to ``path`` via a temporary file in the same folder and a rename."""
    with _atomic(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_copy(src, dst):
    """Copy ``src`` to ``dst`` through a temporary name and a rename."""
    with _atomic(dst) as tmp:
        shutil.copyfile(src, tmp)


def parse_entities(source_file):
    """BIDS entities of a file name as an ordered dict {entity: label}."""
    name = Path(source_file).name
    name = re.sub(r"\.nii(\.gz)?$", "", name)
    out = {}
    for part in name.split("_")[:-1]:
        if "-" in part:
            key, value = part.split("-", 1)
            out[key] = value
    return out


def entity_prefix(entities):
    """``sub-01_ses-A_acq-x_run-1`` from an entity dict, in BIDS order."""
    keys = [k for k in ENTITY_ORDER if k in entities] + [k for k in entities if k not in ENTITY_ORDER]
    return "_".join(f"{k}-{entities[k]}" for k in keys)


def anat_dir(output_dir, entities):
    out = Path(output_dir) / f"sub-{entities['sub']}"
    if "ses" in entities:
        out = out / f"ses-{entities['ses']}"
    return out / "anat"


def derivative_paths(output_dir, source_file, template_id, res_label):
    """Paths of the per-scan derivatives of ``source_file``."""
    entities = parse_entities(source_file)
    prefix = entity_prefix(entities)
    folder = anat_dir(output_dir, entities)
    return {
        "json": folder / f"{prefix}_desc-qc_T1w.json",
        "preproc": folder / f"{prefix}_space-{template_id}_res-{res_label}_desc-preproc_T1w.nii.gz",
        "xfm": folder / f"{prefix}_from-T1w_to-{template_id}_mode-image_xfm.txt",
        "report": folder / f"{prefix}_desc-qc_T1w.html",
        "thumbnail": folder / f"{prefix}_desc-thumbnail_T1w.png",
    }


def qc_row(record, artifacts):
    """The table row (ordered dict) of one per-scan record."""
    entities = parse_entities(record["source_file"])
    row = {
        "participant_id": f"sub-{entities.get('sub', 'n/a')}",
        "session_id": f"ses-{entities['ses']}" if "ses" in entities else "n/a",
        "run_id": entities.get("run", "n/a"),
        "acq_id": entities.get("acq", "n/a"),
        "source_file": record["source_file"],
        "p_bad": _fmt(record.get("p_bad")),
        "p_bad_std": _fmt(record.get("p_bad_std")),
        "qc": record.get("qc", "error"),
    }
    for artifact in artifacts:
        row[f"p_{artifact}"] = _fmt((record.get("p_artifacts") or {}).get(artifact))
    scores = record.get("detector_scores") or {}
    row.update({
        "likely_artifact": record.get("likely_artifact") or "n/a",
        "reason": record.get("reason") or "n/a",
        "p_bad_network": _fmt(record.get("p_bad_network")),
    })
    row.update({column: _fmt(scores.get(name)) for name, column in SCORE_COLUMNS.items()})
    acquisition = record.get("acquisition") or {}
    row.update({column: str(acquisition.get(field, "n/a")) for column, field in ACQUISITION_COLUMNS.items()})
    row.update({
        "reg_quality": _fmt(record.get("reg_quality")),
        "voxel_size_mm": record.get("voxel_size_mm") or "n/a",
        "dims": record.get("dims") or "n/a",
        "runtime_s": _fmt(record.get("runtime_s"), 2),
        "error": record.get("error") or "n/a",
    })
    return row


def _fmt(value, digits=4):
    if value is None or value == "n/a":
        return "n/a"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def write_tsv(path, rows):
    """Write rows (dicts) as a TSV through a temporary file; columns: the union, in order."""
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    if not columns:
        columns = FIRST_COLUMNS + LAST_COLUMNS
    lines = ["\t".join(columns)]
    lines += ["\t".join(str(row.get(c, "n/a")).replace("\t", " ").replace("\n", " ") for c in columns)
              for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_records(output_dir, subject):
    """Every per-scan QC record (JSON) written for ``subject`` (label without ``sub-``)."""
    records = []
    for path in sorted((Path(output_dir) / f"sub-{subject}").rglob("*_desc-qc_T1w.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def write_subject_table(output_dir, subject):
    """Write ``sub-<label>/sub-<label>_desc-qc_T1w.tsv`` from the subject's per-scan JSONs."""
    records = read_records(output_dir, subject)
    artifacts = []
    for record in records:
        artifacts += [a for a in (record.get("p_artifacts") or {}) if a not in artifacts]
    rows = [qc_row(r, artifacts) for r in records]
    path = Path(output_dir) / f"sub-{subject}" / f"sub-{subject}_desc-qc_T1w.tsv"
    write_tsv(path, rows)
    return path, rows


def write_dataset_description(output_dir, model_id, bids_dir):
    payload = {
        "Name": "bidsqc: automated T1w quality control",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "bidsqc", "Version": __version__,
                         "Description": f"3D CNN ensemble QC, model {model_id}",
                         "CodeURL": "https://github.com/bidsqc/bidsqc"}],
        "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        "ModelID": model_id,
    }
    atomic_write_text(Path(output_dir) / "dataset_description.json", json.dumps(payload, indent=2) + "\n")


def write_group_outputs(output_dir):
    """Aggregate every subject table into ``group_desc-qc_T1w.tsv`` with the dataset-relative
    columns (bidsqc.model.relative: each scan against the other scans of its acquisition),
    list the failed source files in ``group_desc-qc_exclude.txt`` (``qc_dataset``: the
    dataset-relative verdict where the acquisition has enough scans, else the participant
    verdict), and write them as a ``.bidsignore`` fragment (``group_desc-qc_bidsignore.txt``):
    appended to the dataset's ``.bidsignore``, pybids-based pipelines (fMRIPrep, sMRIPrep,
    ...) no longer see the failed scans. Returns (rows, excluded)."""
    from .model.relative import relative_verdicts

    output_dir = Path(output_dir)
    rows = []
    for table in sorted(output_dir.glob("sub-*/sub-*_desc-qc_T1w.tsv")):
        rows += read_tsv(table)
    rows = relative_verdicts(rows)
    write_tsv(output_dir / "group_desc-qc_T1w.tsv", rows)
    excluded = [r["source_file"] for r in rows if r.get("qc_dataset") == "fail"]
    atomic_write_text(output_dir / "group_desc-qc_exclude.txt", "".join(f"{f}\n" for f in excluded))
    atomic_write_text(output_dir / "group_desc-qc_bidsignore.txt",
                      "# append to <bids_dir>/.bidsignore to hide failed T1w scans from BIDS tools\n"
                      + "".join(f"{f}\n" for f in excluded))
    return rows, excluded
