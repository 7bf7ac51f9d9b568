"""Running planned jobs: the job store (``store.py``: SQLite, migrations, claims, attempts,
events), submitting with failover down the ranking and the agent loop that launches deferred
jobs and reconciles after crashes (``submit.py``), and waiting for a green window inside a
pipeline step (``wait.py``). Launchers themselves live in ``carbonsched.providers.cloud``.
"""
