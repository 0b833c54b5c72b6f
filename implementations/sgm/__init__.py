"""Clean-room reference implementation of SGM binary locking (ACD421/sgm-continual-learning).

Written from `shared/specs/sgm.md`; no code of the original repository is used. The repository is
not one algorithm but several mechanisms that share the word "lock" (spec §1), so each has its own
module:

* `evolution`: family A, the (30, 6) evolutionary search with causal/coalition locking (§1.1-1.3).
* `hill_climb`: family B, oracle-region (1+1) hill climbers of the stress tests (§1.5).
* `primitive`: family C, the bare mask primitive of the academic validation (§1.6, §2.2).
* `interference`: an operational measure of gradient interference under a lock mask (§3.1).
* `quantization`: the model-based variant and its 8-bit quantisation test (§1.4, §2.1 #11).
* `torch_masking`: families D and F, PyTorch gradient masks and fixed forward masks (§1.7).
* `protocols`: the named experiments the claims ledger runs.
"""
