"""Tests of the benchmark helpers (PyTorch reference parity)."""
