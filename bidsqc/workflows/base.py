"""The whole participant-level workflow: one QC branch and one derivatives writer per T1w."""

import re

from nipype.pipeline import engine as pe

from ..interfaces.bids import WriteQCDerivatives
from .anatomical import init_t1w_qc_wf


def _node_name(source_file):
    stem = re.sub(r"\.nii(\.gz)?$", "", source_file.split("/")[-1])
    return re.sub(r"[^A-Za-z0-9]", "_", stem)


def init_bidsqc_wf(scans, output_dir, model_dir, template=None, mc_samples=0,
                   threshold=-1.0, provenance=None, work_dir=None, reports=True, name="bidsqc_wf"):
    """Build the workflow for ``scans`` (dicts with ``path``, ``source_file`` relative to the
    BIDS root and optional ``input_sha256`` and ``acquisition``, the sidecar's protocol fields),
    writing into ``output_dir``; ``template``: as init_t1w_qc_wf; ``reports``: also the
    per-scan HTML report and thumbnail (bidsqc.reports)."""
    wf = pe.Workflow(name=name, base_dir=str(work_dir) if work_dir else None)
    for scan in scans:
        label = _node_name(scan["source_file"])
        qc_wf = init_t1w_qc_wf(model_dir, template=template, mc_samples=mc_samples, threshold=threshold,
                               saliency=reports, name=f"t1w_qc_{label}_wf")
        qc_wf.inputs.inputnode.in_file = scan["path"]
        prov = dict(provenance or {}, input_sha256=scan.get("input_sha256"))
        sink = pe.Node(WriteQCDerivatives(source_file=scan["source_file"], output_dir=str(output_dir),
                                          provenance=prov, acquisition=scan.get("acquisition") or {},
                                          reports=bool(reports)),
                       name=f"ds_qc_{label}", run_without_submitting=True, overwrite=True)
        wf.connect([(qc_wf, sink, [("outputnode.info", "info"), ("outputnode.preproc_file", "preproc_file"),
                                   ("outputnode.xfm_file", "xfm_file"),
                                   ("outputnode.conformed_file", "conformed_file")])])
    return wf
