"""Render the per-scan and group pages from their Jinja2 templates (autoescaped; every value
from the dataset reaches the page as escaped text or as JSON inside a script element)."""

import base64
import os
from functools import lru_cache
from importlib import resources

import numpy as np

from . import figures

REPORT_VERSION = 1


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("bidsqc.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=False)
    return env


def _asset(name):
    """A stylesheet or script shipped with bidsqc, inlined as is (never a value from the dataset)."""
    from markupsafe import Markup

    return Markup(resources.files("bidsqc.reports").joinpath("templates", name).read_text())


def _b64(png):
    return base64.b64encode(png).decode("ascii") if png else None


def _fmt(value, digits=4):
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _facts(record, header):
    """(name, value) rows of the scan's header facts, acquisition and provenance."""
    prov = record.get("provenance") or {}
    settings = prov.get("settings") or {}
    rows = [("bidsqc version", prov.get("bidsqc_version")), ("model", record.get("model_id")),
            ("template", record.get("template") or prov.get("template")),
            ("MC-dropout passes", record.get("mc_samples")), ("fold models", record.get("n_folds")),
            ("settings", ", ".join(f"{k} {v}" for k, v in sorted(settings.items()) if v is not None)),
            ("voxel size (mm)", record.get("voxel_size_mm")), ("dimensions", record.get("dims")),
            ("orientation (as stored)", record.get("orientation")), ("oblique", record.get("oblique")),
            ("datatype", header.get("datatype")), ("registration quality", record.get("reg_quality")),
            ("input sha256", record.get("input_sha256")), ("runtime (s)", record.get("runtime_s"))]
    rows += [(name, value) for name, value in sorted((record.get("acquisition") or {}).items())]
    return [(name, _fmt(value)) for name, value in rows if value not in (None, "", {})]


def _score_rows(record, calibrations):
    from ..scores import SCORE_COLUMNS

    scores = record.get("detector_scores") or {}
    p_detectors = record.get("p_detectors") or {}
    rows = []
    for name, cal in calibrations.items():
        if scores.get(name) is None:
            continue
        rows.append({"column": SCORE_COLUMNS.get(name, name), "value": _fmt(float(scores[name])),
                     "low": _fmt(float(cal["low"])), "threshold": _fmt(float(cal["threshold"])),
                     "high": _fmt(float(cal["high"])), "p": _fmt(p_detectors.get(name))})
    return rows


def relative_href(from_file, to_file):
    """A link from the page ``from_file`` to ``to_file``, both paths on disk, '/'-separated."""
    return os.path.relpath(to_file, os.path.dirname(from_file)).replace(os.sep, "/")


def scan_report(record, conformed=None, preproc=None, saliency=None, brain_mask=None, calibrations=None,
                artifacts=(), group_href=None, store=""):
    """The per-scan page (HTML text) and its thumbnail (PNG bytes, or None after an error).
    ``record``: the scan's QC JSON; ``conformed``: the RAS image as acquired (nibabel);
    ``preproc``: the network's input on the model grid (nibabel), ``saliency`` (array on the
    grid, 0-1) and ``brain_mask`` (the template brain on the grid) for the overlays;
    ``calibrations``: the card's detectors; ``store``: the key rating storage is shared under
    (one per output folder)."""
    from ..scores import SCORE_COLUMNS

    calibrations = calibrations or {}
    figs, thumb, window, header = {}, None, "", {}
    if conformed is not None:
        data = np.asarray(conformed.dataobj, np.float32)
        zooms = tuple(float(z) for z in conformed.header.get_zooms()[:3])
        lo, hi = figures.robust_window(data)
        window = f"{lo:.4g}-{hi:.4g} (0.5th-99.5th percentile of the non-zero voxels)"
        figs["mosaic"] = _b64(figures.mosaic(data, zooms))
        thumb = figures.thumbnail(data, zooms)
        header["datatype"] = record.get("datatype")
        flagged = _fired(record, calibrations)
        if flagged in figures.EVIDENCE:
            figs["evidence"] = _b64(figures.EVIDENCE[flagged](data, zooms))
    if record.get("detector_scores") and calibrations:
        figs["scores"] = _b64(figures.score_ranges(record["detector_scores"], calibrations, SCORE_COLUMNS))
    if preproc is not None:
        grid = np.asarray(preproc.dataobj, np.float32)
        grid_zooms = tuple(float(z) for z in preproc.header.get_zooms()[:3])
        if saliency is not None:
            figs["saliency"] = _b64(figures.mosaic(grid, grid_zooms, overlay=saliency))
        figs["registration"] = _b64(figures.mosaic(grid, grid_zooms, contour=brain_mask))
    p_artifacts = sorted((record.get("p_artifacts") or {}).items(), key=lambda kv: -kv[1])
    html = _environment().get_template("scan.html").render(
        record=dict(record), css=_asset("base.css"), rating_js=_asset("rating.js"), figures=figs,
        window=window, score_rows=_score_rows(record, calibrations), evidence_name=_fired(record, calibrations),
        p_artifacts=p_artifacts, facts=_facts(record, header), artifacts=list(artifacts), group_href=group_href,
        meta={"store": store, "source_file": record["source_file"], "version": REPORT_VERSION})
    return html, thumb


def _fired(record, calibrations):
    """The detector with the highest p_bad among those whose score is above its clean range, or None."""
    p_detectors = record.get("p_detectors") or {}
    fired = {name: p for name, p in p_detectors.items() if p and p > 0 and name in calibrations}
    return max(fired, key=fired.get) if fired else None


def group_report(rows, scans, threshold=None, band=None, artifacts=(), store="", histograms=None):
    """The group page (HTML text). ``rows``: the group table's rows; ``scans``: per row, the
    links {report, thumbnail} relative to the page (None where there is none);
    ``histograms``: {title: PNG bytes}."""
    table = []
    for row, links in zip(rows, scans):
        table.append({key: row.get(key, "n/a") for key in GROUP_COLUMNS} | {
            "report": (links or {}).get("report"), "thumbnail": (links or {}).get("thumbnail")})
    return _environment().get_template("group.html").render(
        css=_asset("base.css"), rating_js=_asset("rating.js"), rows=table, n=len(table),
        counts={qc: sum(r["qc"] == qc for r in table) for qc in ("pass", "uncertain", "fail", "error")},
        histograms=[(title, _b64(png)) for title, png in (histograms or {}).items()],
        artifacts=list(artifacts), meta={"store": store, "version": REPORT_VERSION, "threshold": threshold,
                                         "band": list(band) if band else None, "artifacts": list(artifacts)},
        data=table)


#: the group table's columns the page shows
GROUP_COLUMNS = ("participant_id", "session_id", "run_id", "acq_id", "source_file", "p_bad", "p_bad_std", "qc",
                 "qc_dataset", "likely_artifact", "reason", "acquisition", "error")
