"""The HTML reports' pages and pictures (bidsqc.reports), without a browser: what each page
holds, that values from the dataset are escaped, that a fired detector shows its evidence.
The pages in a real browser: tests/test_cli.py."""

import base64
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest

from bidsqc.model.ensemble import DEFAULT_MODEL_DIR
from bidsqc.reports import figures
from bidsqc.reports.render import group_report, scan_report

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def scan(stripped_t1w_2mm):
    return nib.load(stripped_t1w_2mm)


@pytest.fixture(scope="module")
def card():
    return json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())


def _record(card, **extra):
    record = {"source_file": "sub-01/anat/sub-01_T1w.nii.gz", "qc": "uncertain", "p_bad": 0.85, "p_bad_std": 0.05,
              "threshold": 0.89, "uncertain_band": [0.81, 0.94], "likely_artifact": "spike",
              "reason": "uncertain: spike_score 2.1 is above its clean range", "p_artifacts": {"spike": 0.6},
              "detector_scores": {"spike": 2.1, "ghosting": 0.01, "thick_slices": 0.1, "bad_slices": 0.4,
                                  "noise": 0.02},
              "p_detectors": {"spike": 0.85, "ghosting": 0.0}, "acquisition": {"Manufacturer": HOSTILE},
              "model_id": card["model_id"], "n_folds": 5, "template": "MNI152NLin6Asym",
              "provenance": {"bidsqc_version": "x", "settings": {"mc_samples": 4}}}
    return dict(record, **extra)


def _images(html):
    return {m.group(1): base64.b64decode(m.group(2)) for m in
            re.finditer(r'id="(fig-[a-z]+)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)}


def test_a_scan_page_holds_every_picture_and_escapes_the_sidecar(scan, card):
    data = np.asarray(scan.dataobj, np.float32)
    saliency = np.zeros(data.shape, np.float32)
    saliency[20:30, 20:30, 20:30] = 1
    html, thumb = scan_report(_record(card), scan, scan, saliency, data > data.mean(), card["detectors"],
                              card["artifacts"], group_href="../../group_desc-qc_T1w.html", store="/out")
    images = _images(html)
    assert set(images) == {"fig-mosaic", "fig-scores", "fig-evidence", "fig-saliency", "fig-registration"}
    for png in list(images.values()) + [thumb]:
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Evidence of the detector that fired: spike" in html  # the spike's k-space
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="../../group_desc-qc_T1w.html#next=sub-01/anat/sub-01_T1w.nii.gz"' in html
    meta = json.loads(re.search(r'id="bidsqc-meta">(.*?)</script>', html).group(1))
    assert meta["source_file"] == "sub-01/anat/sub-01_T1w.nii.gz" and meta["store"] == "/out"
    assert "https://" not in html.replace("https://github.com", "") and "<link" not in html  # nothing fetched


def test_an_error_row_gets_a_page_without_pictures(card):
    html, thumb = scan_report({"source_file": "sub-09/anat/sub-09_T1w.nii.gz", "qc": "error",
                               "error": "conform: cannot read image"}, calibrations=card["detectors"])
    assert thumb is None and not _images(html) and "conform: cannot read image" in html


def test_no_detector_evidence_where_none_fired(scan, card):
    html, _ = scan_report(_record(card, p_detectors={"spike": 0.0}), scan, calibrations=card["detectors"])
    assert "fig-evidence" not in html and "fig-mosaic" in html


def test_the_group_page_carries_each_row_as_data_never_as_markup():
    rows = [{"source_file": f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz", "qc": "pass", "p_bad": "0.1",
             "acquisition": HOSTILE} for i in range(3)]
    html = group_report(rows, [{"report": "sub-01/anat/x.html", "thumbnail": None}] * 3, threshold=0.9,
                        band=(0.8, 0.95), artifacts=["spike"], store="/out")
    assert HOSTILE not in html
    data = json.loads(re.search(r'id="bidsqc-data">(.*?)</script>', html, re.S).group(1))
    assert [r["acquisition"] for r in data] == [HOSTILE] * 3 and len(data) == 3


def test_the_mosaic_shows_voxels_at_their_size(scan):
    data = np.asarray(scan.dataobj, np.float32)
    thick = data[:, :, ::3]  # 2 x 2 x 6 mm voxels
    square = figures.mosaic(data, (2.0, 2.0, 2.0), n=1)
    stretched = figures.mosaic(thick, (2.0, 2.0, 6.0), n=1)
    from matplotlib import image

    a, b = (image.imread(io.BytesIO(png)) for png in (square, stretched))
    assert abs(a.shape[0] - b.shape[0]) <= 6  # coronal and sagittal rows as high in mm as the 2 mm scan's
