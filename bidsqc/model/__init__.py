"""Model code: network, losses, ensemble loading/prediction, dataset building and training."""
