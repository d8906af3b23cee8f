"""Thin Nipype adapters around bidsqc's plain functions.

Every interface passes a ``info`` dict down the branch. A failure is caught, written
into ``info['error']`` as one line (``stage: message``) and later interfaces pass it
through untouched, so one broken scan becomes an ``error`` row and never stops the
other branches.
"""

import logging as _logging
import os as _os

# Nipype workers (MultiProc forkserver) start with Nipype's default INFO logging; follow
# the level the bidsqc command line chose.
if _os.environ.get("BIDSQC_NIPYPE_LEVEL"):
    for _name in ("nipype.workflow", "nipype.interface"):
        _logging.getLogger(_name).setLevel(_os.environ["BIDSQC_NIPYPE_LEVEL"])
