"""What the user asks: job files (``job.py``), organisation policy files (``policy_file.py``),
batch files (``batch_file.py``), spot and data-transfer economics (``economics.py``), the JSON
Schemas of all three and of ``plan --json`` (``schemas.py``), and the one TOML reader with the
typed values every schema uses (``tomlfile.py``). Validation only: nothing here plans or runs.
"""
