"""Benchmarks of ddpm_lightning against plain PyTorch: ``make bench`` (``python -m benchmarks.bench``).

See benchmarks/README.md for what each section measures and how to read the table.
"""
