"""What builds a model, never imported to rate a scan: the cached training set (dataset),
augmentation, grid moves (geometry), losses, the k-fold loop (folds), the detectors'
calibration and the artifact naming's fit (calibrate), and metrics. ``bidsqc-train`` is its
command line; ``bidsqc.training.folds.train_ensemble`` its Python entry."""
