"""Offline model work: calibrating and evaluating the I3D classifier on held-out clips."""
