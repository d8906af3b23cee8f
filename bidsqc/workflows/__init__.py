"""Nipype workflow factories: ``init_bidsqc_wf`` (whole app), ``init_t1w_qc_wf`` (one T1w)."""
