"""The QC branch of one T1w scan, embeddable in other Nipype pipelines.

    from bidsqc.workflows.anatomical import init_t1w_qc_wf
    wf = init_t1w_qc_wf(model_dir=..., name="t1w_qc")
    parent.connect(t1w_source, "out_file", wf, "inputnode.in_file")
"""

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe

from ..interfaces.conform import Conform
from ..interfaces.normalize import ResampleNormalize
from ..interfaces.predict import PredictQC
from ..interfaces.register import RegisterToTemplate
from ..model.card import read_card


def init_t1w_qc_wf(model_dir, template=None, mc_samples=0, threshold=-1.0, saliency=False, name="t1w_qc_wf"):
    """Build conform -> register -> resample/normalise -> predict for one T1w, registered to
    ``template`` (default: the model card's, the template the ensemble was trained on);
    ``saliency``: the predict stage also writes the ensemble's Grad-CAM map (``saliency_file``
    in ``info``), which the per-scan report shows.

    Inputs (``inputnode``)
        in_file: T1w NIfTI path. info: dict carried along (may be empty).
    Outputs (``outputnode``)
        info: the scan's record (p_bad, p_bad_std, qc, p_artifacts, reg_quality,
        voxel_size_mm, dims, timings; ``error`` with a one-line message when a stage
        failed). preproc_file: the image the network saw. xfm_file: ITK affine
        template -> T1w. conformed_file: the RAS-oriented T1w.
    """
    if template is None:
        template = read_card(model_dir)["input"]["template"]
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=["in_file", "info"]), name="inputnode")
    inputnode.inputs.info = {}
    outputnode = pe.Node(IdentityInterface(fields=["info", "preproc_file", "xfm_file", "conformed_file"]),
                         name="outputnode")
    conform = pe.Node(Conform(), name="conform")
    register = pe.Node(RegisterToTemplate(template=template), name="register")
    normalize = pe.Node(ResampleNormalize(model_dir=str(model_dir), template=template), name="normalize")
    predict = pe.Node(PredictQC(model_dir=str(model_dir), mc_samples=int(mc_samples),
                                threshold=float(threshold), saliency=bool(saliency)), name="predict")
    wf.connect([
        (inputnode, conform, [("in_file", "in_file"), ("info", "info")]),
        (conform, register, [("out_file", "in_file"), ("info", "info")]),
        (conform, normalize, [("out_file", "in_file")]),
        (register, normalize, [("out_file", "xfm_file"), ("info", "info")]),
        (normalize, predict, [("out_file", "in_file"), ("info", "info")]),
        (predict, outputnode, [("info", "info")]),
        (normalize, outputnode, [("out_file", "preproc_file")]),
        (register, outputnode, [("out_file", "xfm_file")]),
        (conform, outputnode, [("out_file", "conformed_file")]),
    ])
    return wf
