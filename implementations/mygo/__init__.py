"""Clean-room reference implementation of MyGO wake-sleep generative replay (Cotix-AI/MyGO).

Written from `shared/specs/mygo.md`; no code of the original repository is used.

* `networks`: the CV Neocortex network (shared features + one 2-way head per task), the
  conditional generator and discriminator (spec §1.2).
* `wake_sleep`: the wake and sleep phases exactly as `src/test.py` runs them, bugs included, and the
  as-described variant with both bugs fixed (spec §1.4-1.6, §4.3).
* `protocols`: the named experiments the claims ledger runs, with the script's fine-tuning
  baseline, a no-sleep ablation and matched-memory exemplar replay.
"""
