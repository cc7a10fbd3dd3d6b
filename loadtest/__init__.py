"""Load tests that tune endpoint autoscaling.

The pieces are separate and joined only by data: ``profiles`` says when requests are due,
``targets`` sends one request, ``generator`` keeps the schedule open-loop, ``stats`` and ``slo``
judge the samples, ``recommend`` turns a result into an autoscaling policy, ``simulator``
predicts what a policy does under a load profile, and ``report`` writes what people look at.
"""
