"""Pages and pictures of the manual made from the code at build time (docs/conf.py)."""

from pathlib import Path


def _cli_page():
    from bidsqc.cli.parser import get_parser, get_simulate_parser, get_train_parser

    out = ["# Command-line reference", "",
           "Generated from the parsers of this version.", ""]
    for title, parser in (("bidsqc", get_parser()), ("bidsqc-train", get_train_parser()),
                          ("bidsqc-simulate", get_simulate_parser())):
        parser.prog = title
        out += [f"## {title}", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out) + "\n"


def _artifact_pictures(folder):
    """One picture per artifact type and severity on nilearn's MNI152 template (1 mm), the
    middle axial, coronal and sagittal slices, made by bidsqc's simulator with a fixed seed."""
    import numpy as np
    from nilearn import datasets

    from bidsqc.artifacts import ARTIFACTS, simulate
    from bidsqc.reports import figures

    folder.mkdir(parents=True, exist_ok=True)
    template = datasets.load_mni152_template(resolution=1)
    data = np.asarray(template.dataobj, np.float32)
    zooms = tuple(float(z) for z in template.header.get_zooms()[:3])
    (folder / "clean.png").write_bytes(figures.thumbnail(data, zooms, height=120))
    for artifact in ARTIFACTS:
        for severity in ("mild", "severe"):
            path = folder / f"{artifact}-{severity}.png"
            if path.exists():
                continue
            img, _ = simulate(template, artifact, severity, np.random.default_rng(7))
            shown = np.asarray(img.dataobj, np.float32)
            path.write_bytes(figures.thumbnail(shown, tuple(float(z) for z in img.header.get_zooms()[:3]),
                                               height=120))


def make_generated(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "cli.md"
    text = _cli_page()
    if not page.exists() or page.read_text() != text:
        page.write_text(text)
    _artifact_pictures(folder / "artifacts")
