"""WriteQCDerivatives: write one scan's BIDS-Derivatives outputs (bidsqc.outputs)."""

import json
import os

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits

from .. import __version__
from ..outputs import atomic_copy, atomic_write_text, derivative_paths


class _WriteInputSpec(BaseInterfaceInputSpec):
    info = traits.Dict(mandatory=True, desc="the scan's record from the QC branch")
    source_file = traits.Str(mandatory=True, desc="T1w path relative to the BIDS root")
    preproc_file = traits.Str("", usedefault=True, desc="image the network saw ('' after an error)")
    xfm_file = traits.Str("", usedefault=True, desc="affine template -> T1w ('' after an error)")
    output_dir = traits.Str(mandatory=True, desc="BIDS-Derivatives folder")
    provenance = traits.Dict(value={}, usedefault=True, desc="bidsqc version, model, settings, checksums")
    acquisition = traits.Dict(value={}, usedefault=True, desc="the BIDS sidecar's protocol fields")


class _WriteOutputSpec(TraitedSpec):
    out_file = traits.Str(desc="the per-scan QC JSON")


class WriteQCDerivatives(SimpleInterface):
    """Copy the preprocessed image and the affine, then write the per-scan QC JSON last
    (its presence marks a finished scan); every file goes through a temporary name."""

    input_spec = _WriteInputSpec
    output_spec = _WriteOutputSpec

    def _run_interface(self, runtime):
        info = dict(self.inputs.info)
        prov = dict(self.inputs.provenance)
        template_id = info.get("template") or prov.get("template", "template")
        paths = derivative_paths(self.inputs.output_dir, self.inputs.source_file, template_id,
                                 prov.get("res_label", "2"))
        record = {"source_file": self.inputs.source_file}
        if info.get("error"):
            record.update(qc="error", error=info["error"])
        else:
            atomic_copy(self.inputs.preproc_file, paths["preproc"])
            atomic_copy(self.inputs.xfm_file, paths["xfm"])
            record.update(preproc_file=os.path.relpath(paths["preproc"], self.inputs.output_dir),
                          xfm_file=os.path.relpath(paths["xfm"], self.inputs.output_dir), error=None)
        for key in ("p_bad", "p_bad_std", "qc", "p_artifacts", "likely_artifact", "reason", "p_bad_network",
                    "detector_scores", "p_detectors", "threshold",
                    "uncertain_band", "reg_quality", "voxel_size_mm", "dims", "oblique", "n_volumes",
                    "warnings", "skull_stripped", "template", "template_source", "template_fallback",
                    "template_to_t1w", "mattes_mi", "mc_samples", "n_folds", "timings"):
            if key in info and key not in record:
                record[key] = info[key]
        record["acquisition"] = dict(self.inputs.acquisition)
        record["runtime_s"] = round(sum((info.get("timings") or {}).values()), 2)
        record["provenance"] = dict(prov, bidsqc_version=__version__)
        record["model_id"] = prov.get("model_id")
        record["input_sha256"] = prov.get("input_sha256")
        atomic_write_text(paths["json"], json.dumps(record, indent=2) + "\n")
        self._results["out_file"] = str(paths["json"])
        return runtime
