"""WriteQCDerivatives: write one scan's BIDS-Derivatives outputs (bidsqc.outputs)."""

import json
import os

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits

from .. import __version__
from ..outputs import atomic_copy, atomic_write_bytes, atomic_write_text, derivative_paths


class _WriteInputSpec(BaseInterfaceInputSpec):
    info = traits.Dict(mandatory=True, desc="the scan's record from the QC branch")
    source_file = traits.Str(mandatory=True, desc="T1w path relative to the BIDS root")
    preproc_file = traits.Str("", usedefault=True, desc="image the network saw ('' after an error)")
    xfm_file = traits.Str("", usedefault=True, desc="affine template -> T1w ('' after an error)")
    output_dir = traits.Str(mandatory=True, desc="BIDS-Derivatives folder")
    provenance = traits.Dict(value={}, usedefault=True, desc="bidsqc version, model, settings, checksums")
    acquisition = traits.Dict(value={}, usedefault=True, desc="the BIDS sidecar's protocol fields")
    conformed_file = traits.Str("", usedefault=True, desc="the RAS-oriented T1w, for the report ('' after an error)")
    reports = traits.Bool(True, usedefault=True, desc="write the per-scan HTML report and thumbnail")


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
                    "uncertain_band", "reg_quality", "voxel_size_mm", "dims", "oblique", "orientation", "n_volumes",
                    "warnings", "skull_stripped", "template", "template_source", "template_fallback",
                    "template_to_t1w", "mattes_mi", "mc_samples", "n_folds", "timings"):
            if key in info and key not in record:
                record[key] = info[key]
        record["acquisition"] = dict(self.inputs.acquisition)
        record["runtime_s"] = round(sum((info.get("timings") or {}).values()), 2)
        record["provenance"] = dict(prov, bidsqc_version=__version__)
        record["model_id"] = prov.get("model_id")
        record["input_sha256"] = prov.get("input_sha256")
        if self.inputs.reports:
            self._write_report(record, info, paths, prov)
        else:  # a page from an earlier rating would show a verdict this one may not have
            for key in ("report", "thumbnail"):
                paths[key].unlink(missing_ok=True)
        atomic_write_text(paths["json"], json.dumps(record, indent=2) + "\n")
        self._results["out_file"] = str(paths["json"])
        return runtime

    def _write_report(self, record, info, paths, prov):
        """The per-scan page and thumbnail, before the JSON that marks the scan finished; a
        report that fails is a warning in the record, never a lost rating."""
        import time

        import nibabel as nib

        from ..model.card import read_card
        from ..reports.render import relative_href, scan_report

        started = time.time()
        try:
            calibrations, artifacts, mask = {}, [], None
            model_dir = prov.get("model_dir")
            if model_dir and os.path.isdir(model_dir):
                card = read_card(model_dir)
                calibrations = {k: v for k, v in (card.get("detectors") or {}).items() if isinstance(v, dict)
                                and "threshold" in v}
                artifacts = list(card.get("artifacts") or [])
                mask = nib.load(os.path.join(model_dir, card["input"]["mask_file"])).get_fdata() > 0
            loaded = {}
            for name, path in (("conformed", self.inputs.conformed_file), ("preproc", self.inputs.preproc_file),
                               ("saliency", info.get("saliency_file"))):
                loaded[name] = nib.load(path) if path and os.path.exists(path) and not info.get("error") else None
            saliency = loaded["saliency"].get_fdata() if loaded["saliency"] is not None else None
            html, thumb = scan_report(record, loaded["conformed"], loaded["preproc"], saliency, mask, calibrations,
                                      artifacts, relative_href(paths["report"], os.path.join(
                                          self.inputs.output_dir, "group_desc-qc_T1w.html")),
                                      store=os.path.abspath(self.inputs.output_dir))
            if thumb:
                atomic_write_bytes(paths["thumbnail"], thumb)
            atomic_write_text(paths["report"], html)
            record["report_file"] = os.path.relpath(paths["report"], self.inputs.output_dir)
        except Exception as exc:  # noqa: BLE001 (matplotlib, nibabel, jinja2 raise many kinds)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            record["warnings"] = list(record.get("warnings") or []) + [f"report not written: {message}"]
        timings = dict(info.get("report_timings") or {}, figures=round(time.time() - started, 3))
        record["report_timings"] = timings
        record["runtime_s"] = round(record["runtime_s"] + timings["figures"], 2)
