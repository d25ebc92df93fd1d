"""MLflow: where runs go and what they carry (:mod:`.tracking`), models by URI (:mod:`.loading`),
the registry (:mod:`.registry`) and its promotion gate, a pure function (:mod:`.promotion`)."""
