"""Training: the loop (:mod:`.loop`), data parallelism under torchrun (:mod:`.distributed`),
Optuna tuning (:mod:`.tuning`)."""
