"""The endpoint: segment bytes → sampled frames → preprocessing → I3D → Prediction.

Imports only the ``clipwatch`` core (never streaming, review, training or loadtest)."""

import os

# MXNet reads this once, when it is first imported. Left unset, MXNet 1.9.1 runs its CPU
# operators on fewer OpenMP threads than there are cores: I3D-R50 took 1.42 s a clip here
# instead of 0.95 s with both cores (measured on this 2-core machine).
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
