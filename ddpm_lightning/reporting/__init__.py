"""Reading finished training runs and summarising them: tables (runs.py → table.py) and figures (figures.py).

The entry point is ``python -m ddpm_lightning.report <sweep dir>`` (ddpm_lightning/report.py).
"""
