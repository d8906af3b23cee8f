"""What ships and rates: the network, the model card, the ensemble (load, predict), the
artifact naming and the decision (threshold, band, detectors, verdict and reason). Nothing
here trains; that is bidsqc.training."""
