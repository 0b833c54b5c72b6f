"""Clean-room reference implementation of Anastrophic Regularization (MituMath).

Written from `shared/specs/anastrophic.md`; no code of the original repository is used.

* `model`: the SimpleCNN of the script (§2).
* `regularizer`: spectral coherence Phi, the "Anastrophic Beta" proxy and the Task-B strategy (§1).
* `data_access`: a tensor wrapper that counts reads, to check that Task B never touches Task A data.
* `protocols`: the named experiments the claims ledger runs.
"""
