"""PredictQC: run the ensemble with Monte Carlo dropout (bidsqc.model.ensemble) and decide the
verdict (bidsqc.model.decision)."""

import logging
import time

import nibabel as nib
import numpy as np
from nipype.interfaces.base import traits

from .base import QCInputSpec, QCInterface, QCOutputSpec


class _PredictInputSpec(QCInputSpec):
    in_file = traits.Str(mandatory=True, desc="preprocessed image on the model grid ('' after an error)")
    model_dir = traits.Str(mandatory=True, desc="ensemble folder")
    mc_samples = traits.Int(0, usedefault=True, desc="MC dropout passes per fold (0: the model card's)")
    threshold = traits.Float(-1.0, usedefault=True, desc="p_bad threshold (<0: the model card's)")
    saliency = traits.Bool(False, usedefault=True, desc="also write the ensemble's Grad-CAM map (for the report)")


class _PredictOutputSpec(QCOutputSpec):
    out_file = traits.Str(desc="unused; kept for a uniform interface")


class PredictQC(QCInterface):
    """p_bad (mean over folds x MC passes), p_bad_std, per-artifact probabilities, verdict."""

    input_spec = _PredictInputSpec
    output_spec = _PredictOutputSpec
    stage = "predict"

    def _stage(self, info, cwd):
        from ..model.decision import decide, decision_rule
        from ..model.ensemble import MC_SEED, load_cached

        # TensorFlow's notes on retracing (one compiled function per fold model) are not the user's concern
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        ensemble = load_cached(self.inputs.model_dir)
        volume = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float32)
        result = ensemble.predict(volume, mc_samples=self.inputs.mc_samples or None, seed=MC_SEED)
        threshold, band = decision_rule(ensemble.threshold, ensemble.uncertain_band, self.inputs.threshold)
        p_artifacts = {a: round(float(v[0]), 4) for a, v in result.p_artifacts.items()}
        scores = info.get("detector_scores") or {}
        outcome = decide(result, 0, threshold, band, ensemble.detectors, scores)
        record = {"p_bad_network": outcome["p_bad_network"]}
        if "p_detectors" in outcome:
            record["p_detectors"] = outcome["p_detectors"]
        # the card's naming weighs the network's heads and the native scores; a detector that
        # raised p_bad, or the network's top head, names it where there is no naming
        record["likely_artifact"] = ensemble.likely_artifact(p_artifacts, scores, outcome["flagged"])
        record["reason"] = outcome["reason"]
        record.update({"p_bad": round(outcome["p_bad"], 4), "p_bad_std": round(float(result.p_bad_std[0]), 4),
                       "p_artifacts": p_artifacts, "qc": outcome["qc"], "threshold": threshold,
                       "uncertain_band": list(band), "mc_samples": int(self.inputs.mc_samples or
                                                                ensemble.card.get("mc_samples", 4)),
                       "mc_seed": MC_SEED, "model_id": ensemble.model_id, "n_folds": len(ensemble.models)})
        if self.inputs.saliency:
            started = time.time()
            record["saliency_file"] = self._saliency(ensemble, volume, cwd)
            # inside the predict stage's time; kept apart to measure what the report costs
            record["report_timings"] = {"saliency": round(time.time() - started, 3)}
        return record

    def _saliency(self, ensemble, volume, cwd):
        """The Grad-CAM map as a NIfTI on the model grid; '' (with a log line) where it fails:
        a report without it never costs the rating."""
        import os

        from ..model.saliency import gradcam

        try:
            out = os.path.join(cwd, "saliency.nii.gz")
            nib.save(nib.Nifti1Image(gradcam(ensemble, volume), ensemble.grid_affine), out)
            return out
        except Exception as exc:  # noqa: BLE001
            logging.getLogger("bidsqc").warning("%s: no saliency map (%s)", self.inputs.in_file, exc)
            return ""
