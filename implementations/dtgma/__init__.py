"""Clean-room reference implementation of DTG-MA (infosave2007/dtgma), from `shared/specs/dtgma.md`.

No code of the original repository is used. Modules:

* `model`: the DTG-MA model as implemented (spec §1): shared input projection and LayerNorms,
  per-task Q/K/V/O, FFN and head, the stored additive mask, the freezing switch; and the library
  training loop `train_continual` (§1.5, §2.1).
* `controls`: isolation controls with a task-id oracle (spec §5.4 item 3).
* `baselines`: the repository's own MLP baselines as they were coded (spec §3), quirks included.
* `cnn`: ResNet18_MNIST, DTG-MA on a CNN backbone, and the CNN baselines (spec §1.8, §2.6, §3).
* `data`: the benchmark streams as the repository built them (spec §2.2, §2.3).
* `protocols`: the named experiments the claims ledger runs.
"""
