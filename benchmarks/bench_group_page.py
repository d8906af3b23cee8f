"""The group page (bidsqc.reports) with 2,000 scans in headless Chromium (Debian's chromium and
chromium-driver, Selenium): page size, time to first render, a sort by p_bad, a text filter and
three rating keys. Rows are drawn at random (seed 0); no scan is rated by bidsqc here.

    python benchmarks/bench_group_page.py [--scans 2000]
"""
import argparse
import random
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains

from bidsqc.reports.render import group_report

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--scans", type=int, default=2000)
n = parser.parse_args().scans
random.seed(0)
rows = []
for i in range(n):
    qc = random.choice(["pass"] * 7 + ["uncertain"] * 2 + ["fail"])
    rows.append({"participant_id": f"sub-{i:04d}", "session_id": "n/a", "run_id": "n/a", "acq_id": "n/a",
                 "source_file": f"sub-{i:04d}/anat/sub-{i:04d}_T1w.nii.gz", "p_bad": f"{random.random():.4f}",
                 "p_bad_std": "0.01", "qc": qc, "qc_dataset": qc,
                 "likely_artifact": random.choice(["motion", "noise", "bias"]),
                 "reason": qc + ": ...", "acquisition": "acq-n/a|Siemens|Prisma|3|1.0x1.0x1.0", "error": "n/a"})
links = [{"report": f"sub-{i:04d}/anat/sub-{i:04d}_desc-qc_T1w.html",
          "thumbnail": f"sub-{i:04d}/anat/sub-{i:04d}_desc-thumbnail_T1w.png"} for i in range(n)]
folder = Path(tempfile.mkdtemp(prefix="bidsqc_group_page_"))
page = folder / "group_desc-qc_T1w.html"
page.write_text(group_report(rows, links, threshold=0.89, band=(0.81, 0.94), artifacts=["motion", "noise", "bias"],
                             store=str(folder)))
options = Options()
options.binary_location = "/usr/bin/chromium"
for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000"):
    options.add_argument(arg)
chrome = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
print(f"bidsqc group page, {n} scans: {page.stat().st_size / 1000:.0f} kB")
started = time.time()
chrome.get(page.as_uri())
shown, thumbnails = (len(chrome.find_elements("css selector", f"#rows {tag}")) for tag in ("tr", "img"))
print(f"  first render      {time.time() - started:.2f} s, {shown} rows and {thumbnails} thumbnails in the page")
started = time.time()
chrome.find_element("css selector", "th[data-key='p_bad']").click()
print(f"  sort by p_bad     {time.time() - started:.2f} s")
started = time.time()
chrome.find_element("id", "filter-text").send_keys("sub-19")
print(f"  text filter       {time.time() - started:.2f} s ({chrome.find_element('id', 'page').text})")
chrome.find_element("tag name", "h1").click()
started = time.time()
ActionChains(chrome).send_keys("gjbjn").perform()
rated = chrome.execute_script("return BidsqcRatings.count()")
print(f"  five keys         {time.time() - started:.2f} s ({rated} rated)")
chrome.quit()
