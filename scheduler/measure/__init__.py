"""Measuring and disclosing: energy readers (``energy.py``: NVML, RAPL, the power model), the
tracker that runs a command under them (``track.py``), the ledger of what a run emitted against
its forecast (``ledger.py``), the disclosure text (``report.py``), and the estimate beside the
ML CO2 Impact calculator (``mlco2.py``).
"""
