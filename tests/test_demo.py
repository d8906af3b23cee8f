"""``bidsqc --demo``: builds a dataset from nilearn's template, rates it with the shipped
ensemble, and flags the scans corrupted with severe artifacts."""

from bidsqc.cli.run import main
from bidsqc.outputs import read_tsv


def test_demo_flags_the_corrupted_scans(tmp_path, capsys, templateflow_home):
    assert main(["--demo", str(tmp_path / "demo")]) == 0
    printed = capsys.readouterr().out
    assert "group_desc-qc_T1w.tsv" in printed
    rows = {r["participant_id"]: r for r in read_tsv(tmp_path / "demo" / "derivatives" / "group_desc-qc_T1w.tsv")}
    assert rows["sub-06"]["qc"] == "error"
    clean = [float(rows[s]["p_bad"]) for s in ("sub-01", "sub-02")]
    corrupted = [float(rows[s]["p_bad"]) for s in ("sub-03", "sub-04", "sub-05")]
    assert all(rows[s]["qc"] != "pass" for s in ("sub-03", "sub-04", "sub-05"))
    assert min(corrupted) > max(clean)
