"""The endpoint: segment bytes → sampled frames → preprocessing → I3D → Prediction.

Imports only the ``clipwatch`` core (never streaming, review, training or loadtest)."""
