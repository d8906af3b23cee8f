"""End to end: the real CLI on a small BIDS dataset built from ../shared/data, with the
shipped ensemble, at participant and group level; command-line errors; the TemplateFlow
path and the offline fallback path."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest
from conftest import block_mean
from fault_inputs import add_odd_label

from bidsqc.cli.run import main
from bidsqc.model.ensemble import DEFAULT_MODEL_DIR
from bidsqc.outputs import FIRST_COLUMNS, LAST_COLUMNS, read_tsv
from bidsqc.scores import DETECTORS

ARTIFACT_COLUMNS = ["p_motion", "p_ghosting", "p_spike", "p_noise", "p_bias", "p_thick_slices",
                    "p_wraparound", "p_gibbs", "p_missing_coverage", "p_bad_slices"]


HOSTILE = "<script>window.pwned=1;alert(1)</script>"


def _add(bids, rel, src):
    dst = bids / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return rel


@pytest.fixture(scope="module")
def bids_dataset(tmp_path_factory, shared_data):
    """3 subjects (one with a session and two runs) and one broken file."""
    bids = tmp_path_factory.mktemp("bids") / "ds"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "bidsqc test", "BIDSVersion": "1.9.0"}))
    # the skull-stripped scans at 2 mm (real heads, rated quicker); the raw Trio head stays at 1 mm
    for rel, sub in (("sub-01/anat/sub-01_T1w.nii.gz", "05"),
                     ("sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz", "08")):
        (bids / rel).parent.mkdir(parents=True)
        block_mean(shared_data / "ds002748" / f"sub-{sub}_T1w.nii.gz", bids / rel)
    files = [
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz",
        _add(bids, "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz", shared_data / "ixi" / "IXI015-HH-1258_T1.nii.gz"),
        _add(bids, "sub-03/anat/sub-03_acq-mprage_T1w.nii.gz",
             shared_data / "raw" / "nichart_dcm2nii_sample_trio_mprage.nii.gz"),
    ]
    # a sidecar with the protocol: recorded with the rating, and what the group level groups scans by
    (bids / "sub-03" / "anat" / "sub-03_acq-mprage_T1w.json").write_text(json.dumps(
        {"Manufacturer": "Siemens", "ManufacturersModelName": "TrioTim", "MagneticFieldStrength": 3,
         "InversionTime": 0.9, "RepetitionTime": 1.9}))
    # a sidecar whose strings are HTML: the reports must show them as text and run none of it
    (bids / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-2_T1w.json").write_text(json.dumps(
        {"Manufacturer": HOSTILE, "ManufacturersModelName": "<img src=x onerror=\"window.pwned=1\">&amp;"}))
    broken = bids / "sub-04" / "anat" / "sub-04_T1w.nii.gz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x1f\x8b\x08 truncated during transfer")
    # sub-01's scan under a label pybids leaves out (the other broken inputs: tests/test_faults.py)
    add_odd_label(bids, bids / files[0])
    return bids, files + ["sub-04/anat/sub-04_T1w.nii.gz"]


@pytest.fixture(scope="module")
def participant_run(bids_dataset, tmp_path_factory, templateflow_home):
    assert (DEFAULT_MODEL_DIR / "model_card.json").is_file(), "the shipped ensemble is missing"
    bids, files = bids_dataset
    out = tmp_path_factory.mktemp("deriv") / "bidsqc"
    # no --template: the model card's (MNI152NLin6Asym), the template the ensemble was trained on
    code = main([str(bids), str(out), "participant", "--nprocs", "2", "--mc-samples", "2",
                 "-w", str(out.parent / "work")])
    return bids, files, out, code


def test_participant_level_rows_columns_and_error_row(participant_run):
    bids, files, out, code = participant_run
    assert code == 0
    rows = read_tsv(out / "sub-02" / "sub-02_desc-qc_T1w.tsv")
    assert [r["source_file"] for r in rows] == files[1:3]
    columns = list(rows[0])
    assert columns[:len(FIRST_COLUMNS)] == FIRST_COLUMNS
    assert columns[len(FIRST_COLUMNS):len(FIRST_COLUMNS) + 10] == ARTIFACT_COLUMNS
    assert columns[-len(LAST_COLUMNS):] == LAST_COLUMNS
    assert rows[0]["session_id"] == "ses-1" and rows[1]["run_id"] == "2"
    for row in rows:
        assert row["qc"] in ("pass", "fail", "uncertain")
        assert 0 <= float(row["p_bad"]) <= 1 and float(row["p_bad_std"]) >= 0
        assert float(row["reg_quality"]) > 0.3
        # the shipped card carries the native-space detectors: every rated scan has their scores
        assert float(row["spike_score"]) > 0 and float(row["ghost_score"]) >= 0 and row["thick_score"] != "n/a"
        assert row["slice_score"] != "n/a" and row["noise_score"] != "n/a"
        assert float(row["p_bad"]) >= float(row["p_bad_network"]) and row["likely_artifact"] != "n/a"
        assert row["reason"].startswith(row["qc"] + ": ")
    # the shipped card calibrates every detector of this version (a card refit before one was added would not)
    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    assert {n for n in card["detectors"] if isinstance(card["detectors"][n], dict)} == set(DETECTORS)
    assert rows[1]["voxel_size_mm"] == "2x2x2"
    error = read_tsv(out / "sub-04" / "sub-04_desc-qc_T1w.tsv")
    assert len(error) == 1 and error[0]["qc"] == "error"
    assert "sub-04_T1w.nii.gz: cannot read image" in error[0]["error"]
    assert error[0]["p_bad"] == "n/a" and error[0]["spike_score"] == "n/a"


def test_derivatives_and_dataset_description(participant_run):
    bids, files, out, _ = participant_run
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bidsqc"
    model_id = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())["model_id"]
    assert model_id in description["GeneratedBy"][0]["Description"]
    anat = out / "sub-02" / "ses-1" / "anat"
    record = json.loads((anat / "sub-02_ses-1_run-1_desc-qc_T1w.json").read_text())
    assert record["model_id"] == model_id and len(record["provenance"]["model_checksum"]) == 64
    assert record["template"] == "MNI152NLin6Asym" and record["template_fallback"] is False
    preproc = out / record["preproc_file"]
    assert preproc.name == "sub-02_ses-1_run-1_space-MNI152NLin6Asym_res-2p5_desc-preproc_T1w.nii.gz"
    img = nib.load(preproc)
    assert img.shape == tuple(json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())["input"]["shape"])
    assert (anat / "sub-02_ses-1_run-1_from-T1w_to-MNI152NLin6Asym_mode-image_xfm.txt").is_file()
    assert not list(out.rglob("*.tmp"))  # no temporary files left behind


def test_group_level_aggregates_and_lists_failures(participant_run):
    bids, files, out, _ = participant_run
    assert main([str(bids), str(out), "group"]) == 0
    rows = read_tsv(out / "group_desc-qc_T1w.tsv")
    assert sorted(r["source_file"] for r in rows) == sorted(files)
    # every acquisition here has fewer than 10 scans: the participant verdicts stand, and the row says so
    assert all(r["qc_dataset"] == r["qc"] for r in rows)
    assert all("fewer than the 10" in r["qc_dataset_reason"] for r in rows if r["qc"] != "error")
    failed = sorted(r["source_file"] for r in rows if r["qc"] == "fail")
    listed = (out / "group_desc-qc_exclude.txt").read_text().split()
    assert sorted(listed) == failed
    assert "bidsignore" in (out / "group_desc-qc_bidsignore.txt").read_text()
    # the sidecar's protocol is in the table and in the acquisition a scan is grouped by
    trio = next(r for r in rows if r["source_file"].startswith("sub-03/"))
    assert (trio["manufacturer"], trio["model_name"], trio["field_strength"]) == ("Siemens", "TrioTim", "3")
    assert trio["acquisition"] == "acq-mprage|Siemens|TrioTim|3|1.0x1.0x1.0"
    record = json.loads((out / "sub-03" / "anat" / "sub-03_acq-mprage_desc-qc_T1w.json").read_text())
    assert record["acquisition"]["InversionTime"] == 0.9
    assert next(r for r in rows if r["source_file"].startswith("sub-01/"))["manufacturer"] == "n/a"
    # the file pybids leaves out is listed with the reason, not lost
    skipped = read_tsv(out / "group_desc-qc_skipped.tsv")
    assert [(r["path"], "not alphanumeric" in r["reason"]) for r in skipped] == [
        ("sub-01/anat/sub-01_acq-a b_T1w.nii.gz", True)]


def test_rerun_skips_finished_scans_unless_forced(participant_run, capsys):
    bids, files, out, _ = participant_run
    record = out / "sub-01" / "anat" / "sub-01_desc-qc_T1w.json"
    stamp = record.stat().st_mtime_ns
    assert main([str(bids), str(out), "participant", "--participant-label", "sub-01", "--nprocs", "1",
                 "--template", "MNI152NLin6Asym", "--mc-samples", "2", "-v", "--no-reports"]) == 0
    assert record.stat().st_mtime_ns == stamp
    assert "already rated" in capsys.readouterr().err
    # another threshold is another rating: the scan is rated again without --force
    assert main([str(bids), str(out), "participant", "--participant-label", "sub-01", "--nprocs", "1",
                 "--template", "MNI152NLin6Asym", "--mc-samples", "1", "--threshold", "0.5", "-v",
                 "--no-reports"]) == 0
    assert record.stat().st_mtime_ns != stamp
    assert "rated again" in capsys.readouterr().err
    assert json.loads(record.read_text())["threshold"] == 0.5
    stamp = record.stat().st_mtime_ns
    assert main([str(bids), str(out), "participant", "--participant_label", "01", "--nprocs", "1",
                 "--template", "MNI152NLin6Asym", "--mc-samples", "1", "--force", "--no-reports"]) == 0
    assert record.stat().st_mtime_ns != stamp


def test_a_recalibrated_card_or_another_version_changes_the_rating_checksum():
    """bidsqc-train --detectors-only rewrites the card's detectors and naming but not the
    fold models: a scan rated before must be rated again, as after a bidsqc upgrade."""
    import copy

    from bidsqc.model.card import rating_checksum, read_card
    from bidsqc.model.ensemble import DEFAULT_MODEL_DIR

    card = read_card(DEFAULT_MODEL_DIR)
    settings = {"template": None, "mc_samples": None, "threshold": None}
    key = rating_checksum("networks", card, settings, "1.0")
    assert rating_checksum("networks", copy.deepcopy(card), dict(settings), "1.0") == key
    recalibrated = copy.deepcopy(card)
    recalibrated["detectors"]["spike"]["threshold"] += 0.1
    renamed = copy.deepcopy(card)
    renamed["naming"]["intercept"][0] += 0.1
    benchmarked = dict(card, benchmark={})  # the card's figures do not change a rating
    assert len({key, rating_checksum("networks", recalibrated, settings, "1.0"),
                rating_checksum("networks", renamed, settings, "1.0"),
                rating_checksum("networks", card, settings, "1.1"),
                rating_checksum("other networks", card, settings, "1.0"),
                rating_checksum("networks", card, dict(settings, mc_samples=2), "1.0")}) == 6
    assert rating_checksum("networks", benchmarked, settings, "1.0") == key


def test_a_changed_score_definition_changes_the_rating_checksum(monkeypatch):
    """A native score whose definition changed (bidsqc.scores.FEATURE_VERSIONS) rates a
    scan again even where the refit left the card's calibration as it was."""
    import bidsqc.scores
    from bidsqc.model.card import rating_checksum, read_card
    from bidsqc.model.ensemble import DEFAULT_MODEL_DIR

    card = read_card(DEFAULT_MODEL_DIR)
    settings = {"template": None, "mc_samples": None, "threshold": None}
    key = rating_checksum("networks", card, settings, "1.0")
    versions = dict(bidsqc.scores.FEATURE_VERSIONS)
    versions["bad_slices"] = versions.get("bad_slices", 1) + 1
    monkeypatch.setattr(bidsqc.scores, "FEATURE_VERSIONS", versions)
    assert rating_checksum("networks", card, settings, "1.0") != key


@pytest.mark.parametrize("case", ["missing", "not_bids", "inside", "participant", "no_t1w"])
def test_command_line_errors_exit_2_with_one_line(case, bids_dataset, tmp_path, capsys):
    bids, _ = bids_dataset
    out = tmp_path / "out"
    argv, expected = {
        "missing": ([str(tmp_path / "nope"), str(out), "participant"], "does not exist"),
        "not_bids": ([str(tmp_path), str(out), "participant"], "not a BIDS dataset"),
        "inside": ([str(bids), str(bids / "derivatives" / "bidsqc"), "participant"], "inside bids_dir"),
        "participant": ([str(bids), str(out), "participant", "--participant-label", "99"],
                        "sub-99 not found"),
        "no_t1w": ([str(bids), str(out), "participant", "--session-label", "9"], "no T1w scans found"),
    }[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    if case == "participant":
        assert "found: sub-01, sub-02, sub-03, sub-04" in err[0]


def test_fallback_template_when_templateflow_cannot_deliver(bids_dataset, tmp_path):
    """An empty TemplateFlow home (offline): a template other than the card's falls back to the
    shipped copy of the card's, with a warning, and says its ratings were never measured."""
    bids, _ = bids_dataset
    out = tmp_path / "out"
    env = dict(os.environ, TEMPLATEFLOW_HOME=str(tmp_path / "empty_tf"), CI=os.environ.get("CI", ""))
    proc = subprocess.run([sys.executable, "-m", "bidsqc.cli.run", str(bids), str(out), "participant",
                           "--participant-label", "01", "--nprocs", "1", "--mc-samples", "1",
                           "--template", "MNI152NLin2009cAsym", "--no-reports"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--template MNI152NLin2009cAsym: model bidsqc-" in proc.stderr and "never measured" in proc.stderr
    assert "template MNI152NLin2009cAsym: TemplateFlow could not deliver it" in proc.stderr
    assert "falling back to MNI152NLin6Asym" in proc.stderr
    record = json.loads((out / "sub-01" / "anat" / "sub-01_desc-qc_T1w.json").read_text())
    assert record["template_fallback"] is True and record["template"] == "MNI152NLin6Asym"
    assert record["qc"] in ("pass", "fail", "uncertain")


def test_the_shipped_template_is_read_without_templateflow(monkeypatch, nlin6):
    """The card's MNI152NLin6Asym comes from the package's copy, byte for byte TemplateFlow's,
    without asking TemplateFlow (which tries a download wherever its cache lacks a file)."""
    from bidsqc.preprocessing import templates

    asked = []
    monkeypatch.setattr(templates, "_templateflow_files", lambda tid: asked.append(tid) or 1 / 0)
    template = templates.get_template("MNI152NLin6Asym", allow_fallback=False)
    assert not asked and template.source.startswith("bidsqc package") and not template.fallback
    assert nlin6.source.startswith("TemplateFlow")
    for shipped, flow in ((template.t1w, nlin6.t1w), (template.mask, nlin6.mask)):
        assert Path(shipped.get_filename()).read_bytes() == Path(flow.get_filename()).read_bytes()


def test_nilearn_fallback_registers_a_head(monkeypatch, raw_head_t1w):
    """Without TemplateFlow and without the shipped copy, nilearn's MNI152 is used."""
    from bidsqc.preprocessing import templates
    from bidsqc.preprocessing.conform import load_image
    from bidsqc.preprocessing.pipeline import DEFAULT_SHAPE, make_grid, make_input_mask, preprocess

    monkeypatch.setattr(templates, "SHIPPED_DIR", Path("/nonexistent"))
    monkeypatch.setattr(templates, "_templateflow_files",
                        lambda tid: (_ for _ in ()).throw(OSError("offline")))
    template = templates.get_template("MNI152NLin2009cAsym")
    assert template.fallback and template.template_id == "MNI152NLin2009aSym"
    grid = make_grid(template)
    volume, info = preprocess(load_image(raw_head_t1w), template, DEFAULT_SHAPE, grid,
                              make_input_mask(template, DEFAULT_SHAPE, grid))
    assert info["reg_quality"] > 0.3


# ------------------------------------------------------------------ the reports, in a real browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium (Debian's chromium and chromium-driver; .ci/run
    installs them), downloading into a folder of its own."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = ("the browser tests need Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1500"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.implicitly_wait(0)
    yield chrome, downloads
    chrome.quit()


def _artefact(name):
    """Where a test saves a screenshot: $BIDSQC_TEST_ARTIFACTS (.ci/run keeps them), else a temporary folder."""
    folder = Path(os.environ.get("BIDSQC_TEST_ARTIFACTS")
                  or Path(os.environ.get("TMPDIR", "/tmp")) / "bidsqc-test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)


def _errors(chrome):
    return [e["message"] for e in chrome.get_log("browser") if e["level"] == "SEVERE"]


def _keys(chrome, keys):
    from selenium.webdriver.common.action_chains import ActionChains

    chrome.find_element("tag name", "h1").click()  # focus leaves the filter box: keys reach the page
    ActionChains(chrome).send_keys(keys).perform()


def test_the_group_page_sorts_rates_with_the_keyboard_and_exports_ratings_training_reads(participant_run, browser):
    import time

    from bidsqc.training.dataset import read_labels

    bids, files, out, _ = participant_run
    chrome, downloads = browser
    assert main([str(bids), str(out), "group"]) == 0
    page = out / "group_desc-qc_T1w.html"
    chrome.get(page.as_uri())
    rows = chrome.find_elements("css selector", "#rows tr")
    assert len(rows) == len(files)
    # failed and uncertain scans first; the error row has no report
    qc = [r.find_element("css selector", "td.qc").text for r in rows]
    order = {"fail": 0, "uncertain": 1, "error": 2, "pass": 3}
    assert [order[q] for q in qc] == sorted(order[q] for q in qc)
    chrome.find_element("css selector", "th[data-key='p_bad']").click()
    values = [r.find_element("css selector", "td.p-bad").text for r in chrome.find_elements("css selector", "#rows tr")]
    numbers = [float(v) for v in values if v != "n/a"]
    assert numbers == sorted(numbers) and len(numbers) == len(files) - 1  # the error row: n/a
    chrome.save_screenshot(_artefact("group_page.png"))
    # rate two scans with the keyboard: sub-01 good; sub-02 run-1 bad, as a spike (key 3: the third artifact)
    search = chrome.find_element("id", "filter-text")
    search.send_keys("sub-01/")
    _keys(chrome, "g")
    search.clear()
    search.send_keys("run-1")
    _keys(chrome, "b3")
    chrome.find_element("id", "export").click()
    exported = downloads / "ratings.tsv"
    for _ in range(50):
        if exported.exists():
            break
        time.sleep(0.1)
    lines = exported.read_text().splitlines()
    assert lines == ["source_file\trating\tartifact", "sub-01/anat/sub-01_T1w.nii.gz\tgood\tn/a",
                     "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz\tbad\tspike"]
    assert not _errors(chrome)
    # the export is what bidsqc-train --labels reads, paths from the BIDS folder (--labels-root)
    scans = read_labels(exported, root=bids)
    assert [(Path(s["source_file"]), s["label"], s["artifact"]) for s in scans] == [
        (bids / files[0], "good", None), (bids / files[1], "bad", "spike")]
    with pytest.raises(ValueError, match="--labels-root"):
        read_labels(exported)
    # and trains on it: a tiny run (one simulated artifact kept, two folds of one epoch, no detectors)
    from bidsqc.artifacts import ARTIFACTS
    from bidsqc.cli.train import main as train

    model = downloads / "tuned"
    assert train(["--labels", str(exported), "--labels-root", str(bids), "--out", str(model), "--cache",
                  str(downloads / "cache"), "--folds", "2", "--epochs", "1", "--batch-size", "2", "--levels", "2",
                  "--base-filters", "4", "--spacing", "5", "--grid", "32", "38", "32", "--clean-variants", "0",
                  "--mc-samples", "1", "--no-detectors",
                  "--exclude-artifacts", ",".join(a for a in ARTIFACTS if a != "noise"), "--nprocs", "1"]) == 0
    card = json.loads((model / "model_card.json").read_text())
    assert card["training"]["n_volumes"] == 3 and card["training"]["n_subjects"] == 2


def test_the_per_scan_page_shows_every_picture_and_escapes_the_sidecar(participant_run, browser):
    bids, files, out, _ = participant_run
    chrome, _ = browser
    report = out / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-1_desc-qc_T1w.html"
    chrome.get(report.as_uri())
    images = chrome.find_elements("css selector", "img")
    assert {i.get_attribute("id") for i in images} >= {"fig-mosaic", "fig-scores", "fig-saliency", "fig-registration"}
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    assert all(chrome.execute_script(loaded, i) for i in images)
    chrome.save_screenshot(_artefact("scan_page.png"))
    # rating on the page is the group page's rating of the same scan
    chrome.execute_script("window.localStorage.clear()")
    _keys(chrome, "b")
    assert "rated bad" in chrome.find_element("id", "rate-state").text
    hostile = out / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-2_desc-qc_T1w.html"
    chrome.get(hostile.as_uri())
    facts = chrome.find_element("id", "facts").text
    assert HOSTILE in facts and '<img src=x onerror="window.pwned=1">&amp;' in facts
    assert chrome.execute_script("return window.pwned === undefined")
    assert not _errors(chrome)
    chrome.get((out / "group_desc-qc_T1w.html").as_uri())
    assert HOSTILE in chrome.find_element("id", "rows").text
    assert chrome.execute_script("return window.pwned === undefined")
    assert "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz\tbad" in chrome.execute_script("return BidsqcRatings.tsv()")
