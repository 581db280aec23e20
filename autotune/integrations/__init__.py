"""Your own fine-tune under autotune: callbacks for the training loops people already have.

* :mod:`autotune.integrations.transformers`: Hugging Face ``Trainer`` (``hf`` extra);
* :mod:`autotune.integrations.lightning`: Lightning (``lightning`` extra).

Each reports the loop's evaluations as the trial's reports, hands its checkpoints to autotune, stops
a pruned trial cleanly and warm-starts a Population-Based child from its parent's checkpoint with the
child's own hyperparameters.  Importing this package imports neither library.
"""
