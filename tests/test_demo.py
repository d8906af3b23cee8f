"""``bidsqc --demo``: builds a dataset from nilearn's template and rates it with the shipped
ensemble. Every corrupted scan is flagged for review (not `pass`) and the missing-coverage
scan fails; clean scans never fail. Measured with bidsqc-418fc49cb11f: p_bad 0.88 motion
(`uncertain`: inside the band 0.813-0.938 around the threshold 0.89) and 0.88
ghosting (`uncertain`), 0.98 missing coverage (`fail`), 0.03 and 0.10 clean (`pass`)."""

from bidsqc.cli.app import main
from bidsqc.outputs import read_tsv


def test_demo_flags_every_corrupted_scan(tmp_path, capsys, templateflow_home):
    assert main(["--demo", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "group_desc-qc_T1w.tsv" in printed
    # both reports are written, and the summary says where
    deriv = tmp_path / "demo" / "derivatives"
    assert f"{deriv}/group_desc-qc_T1w.html" in printed and (deriv / "group_desc-qc_T1w.html").is_file()
    assert all((deriv / f"sub-0{i}" / "anat" / f"sub-0{i}_desc-qc_T1w.html").is_file() for i in range(1, 7))
    rows = {r["participant_id"]: r for r in read_tsv(tmp_path / "demo" / "derivatives" / "group_desc-qc_T1w.tsv")}
    assert rows["sub-06"]["qc"] == "error"
    clean = [float(rows[s]["p_bad"]) for s in ("sub-01", "sub-02")]
    corrupted = [float(rows[s]["p_bad"]) for s in ("sub-03", "sub-04", "sub-05")]
    assert all(rows[s]["qc"] != "fail" for s in ("sub-01", "sub-02"))
    assert all(rows[s]["qc"] != "pass" for s in ("sub-03", "sub-04", "sub-05"))  # all flagged
    assert rows["sub-05"]["qc"] == "fail"  # severe missing coverage
    # each rated scan says why, in the table and in the printed summary
    assert all(rows[s]["reason"].startswith(rows[s]["qc"] + ": ") for s in ("sub-01", "sub-02", "sub-03", "sub-04",
                                                                           "sub-05"))
    assert f"sub-05: {rows['sub-05']['reason']}" in printed
    assert sum(corrupted) / 3 > sum(clean) / 2 + 0.05
