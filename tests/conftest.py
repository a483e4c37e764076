"""Test-wide settings."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # plots are written to files, never shown
# The tests download nothing: a Hugging Face Hub call fails at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Hypothesis's per-example deadline measures the machine, not the code: on a loaded
# 2-core CI machine it fails correct properties. The number of examples stays the default.
settings.register_profile(
    "pml-hashing", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("pml-hashing")
