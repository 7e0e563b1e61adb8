"""How a training run's seed fans out into its random streams.

Every stream (a stage's patch or latent sampler, its torch generator, the diffusion's noise on a GPU, a
held-out check's fixed draws) is one child of the run's seed in NumPy's seed-sequence tree:
``np.random.SeedSequence(seed, spawn_key=key)``, which is ``SeedSequence(seed).spawn(...)`` followed down
``key`` (``spawn_key=(i, j)`` is child ``j`` of child ``i``). Children are statistically independent of
each other and of the parent, whatever the seeds; offsets such as ``seed * 1000 + 40`` are not (seeds 0
and 1 share streams with nearby offsets).
"""
from __future__ import annotations

import numpy as np


def child_seed(seed: int, *key: int) -> int:
    """The seed of the stream ``key`` under the run seed ``seed``: the first 64-bit word of
    ``SeedSequence(seed, spawn_key=key)``'s state, shifted to 63 bits, so that it serves both
    ``np.random.default_rng`` and ``torch.Generator.manual_seed``. Deterministic; ``key`` entries are
    non-negative ints."""
    state = np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))
