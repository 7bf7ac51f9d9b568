"""``python -m carbonsched.runner``: the local runner's old module path.

Runs started before the layout change (and scripts that call it) name this module; the runner
now lives beside the local launcher in ``carbonsched.providers.cloud.local_runner``.
"""
from __future__ import annotations

import sys

from carbonsched.providers.cloud.local_runner import main

if __name__ == "__main__":
    sys.exit(main())
