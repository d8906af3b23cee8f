"""Shared behaviour of bidsqc interfaces: error capture and per-stage timing."""

import time

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits


class QCInputSpec(BaseInterfaceInputSpec):
    info = traits.Dict(value={}, usedefault=True, desc="record of the scan so far (error, timings, fields)")


class QCOutputSpec(TraitedSpec):
    info = traits.Dict(desc="record of the scan, updated by this stage")


class QCInterface(SimpleInterface):
    """Run ``self._stage(info)`` unless an earlier stage failed; record errors and time."""

    stage = "stage"

    def _run_interface(self, runtime):
        info = dict(self.inputs.info)
        self._results.setdefault("out_file", "")
        if not info.get("error"):
            started = time.time()
            try:
                info.update(self._stage(info, runtime.cwd) or {})
            except Exception as exc:  # every failure becomes the scan's one-line error
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                info["error"] = f"{self.stage}: {message}"
            info.setdefault("timings", {})[self.stage] = round(time.time() - started, 3)
        self._results["info"] = info
        return runtime

    def _stage(self, info, cwd):
        raise NotImplementedError
