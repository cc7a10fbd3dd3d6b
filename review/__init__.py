"""Human review of flagged clips: the queue (uncertainty first, diverse), leases, the web tool,
audit and consensus, write-back of labels and exports. Imports ``clipwatch`` (and
``inference.decode`` for media remuxing); nothing in ``inference`` imports it."""
