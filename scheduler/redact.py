"""Secret redaction for anything carbonsched writes or prints: error texts, events, logs.

A secret is the value of an environment variable whose name looks like a credential (token,
secret, password, API key, private key, AWS/GCP/Azure access keys) and is at least 6 characters
long, in three spellings: as is, base64 of it, and base64 of ``USER:PASSWORD`` for the HTTP Basic
pairs carbonsched sends (WattTime). ``redact(text)`` replaces every occurrence with ``***``.
The grid HTTP client scrubs the headers it sent on top of this (``providers/grid/http.py``).
"""
from __future__ import annotations

import base64
import os
import re
from typing import Mapping

_SECRET_WORDS = r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|PRIVATE_?KEY"
SECRET_NAME = re.compile(f"({_SECRET_WORDS})", re.IGNORECASE)  # names a job file's env may not use
SECRET_ENV = re.compile(f"({_SECRET_WORDS}|ACCESS_KEY|SESSION_KEY)", re.IGNORECASE)  # also the cloud SDKs' keys
BASIC_PAIRS = (("WATTTIME_USERNAME", "WATTTIME_PASSWORD"),)
MIN_SECRET_LEN = 6


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Every spelling of every secret in ``env`` (default: the process environment), longest first."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if SECRET_ENV.search(k) and v and len(v) >= MIN_SECRET_LEN}
    for user, password in BASIC_PAIRS:
        if env.get(user) and env.get(password):
            found.add(base64.b64encode(f"{env[user]}:{env[password]}".encode()).decode())
    found |= {base64.b64encode(v.encode()).decode() for v in list(found)}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, "***")
    return text
