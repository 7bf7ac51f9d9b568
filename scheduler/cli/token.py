"""CLI for API tokens: ``token create``, ``token list``, ``token revoke`` (thin layer).

Tokens live in the configured job store (the team's PostgreSQL database, where the server runs);
run these where that store is configured (``CARBONSCHED_DATABASE_URL``) or pass ``--database``.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from carbonsched.cli._common import open_store

EPILOG = """\
scopes (each includes the ones before it):
  read    list and read the team's jobs, logs, reports; regions, forecasts, ledger
  plan    + POST /v1/plan and /v1/plan/batch
  submit  + submit and cancel jobs
  admin   + list and revoke the team's tokens over the API

examples:
  carbonsched token create --team ml-research --scope submit --name ci-pipeline
  carbonsched token list --team ml-research
  carbonsched token revoke 3f9a0c1d2e4b
"""


def _store(a):
    return open_store(a.database, create=True)


def cmd_token_create(a: argparse.Namespace) -> int:
    from carbonsched.run.tokens import create_token

    text, token = create_token(_store(a), team=a.team, scope=a.scope, name=a.name or "", now=datetime.now(timezone.utc))
    if a.json:
        print(json.dumps({**token.to_dict(), "token": text}, indent=2))
    else:
        print(text)
        print(f"token {token.id} for team {token.team}, scope {token.scope}: shown once, keep it in a secret store "
              "(CARBONSCHED_TOKEN for the CLI)", file=sys.stderr)
    return 0


def cmd_token_list(a: argparse.Namespace) -> int:
    from carbonsched.run.tokens import list_tokens

    tokens = list_tokens(_store(a), a.team)
    if a.json:
        print(json.dumps({"schema_version": 1, "tokens": [t.to_dict() for t in tokens]}, indent=2))
        return 0
    if not tokens:
        print("no tokens; create one with `carbonsched token create --team TEAM --scope read`")
        return 0
    from carbonsched.cli.render import table

    print(table(["id", "team", "scope", "name", "created", "last used", "revoked"],
                [[t.id, t.team, t.scope, t.name or "-", t.created_at, t.last_used_at or "-", t.revoked_at or "-"]
                 for t in tokens]))
    return 0


def cmd_token_revoke(a: argparse.Namespace) -> int:
    from carbonsched.run.tokens import revoke_token

    token = revoke_token(_store(a), a.token_id, datetime.now(timezone.utc))
    print(f"token {token.id} ({token.team}, {token.scope}) revoked at {token.revoked_at}")
    return 0


def register(sub, common) -> None:
    p = sub.add_parser("token", parents=[common], help="API tokens for `carbonsched server` (team + scope)",
                       description=__doc__.split("\n\n", 1)[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--database", metavar="PATH|URL", help="the job store (default: the configured one)")
    c = tsub.add_parser("create", parents=[common, target], help="a new token, printed once")
    c.add_argument("--team", required=True, help="the team whose jobs the token sees")
    c.add_argument("--scope", required=True, metavar="read|plan|submit|admin", help="what the token may do (see below)")
    c.add_argument("--name", help="what it is for (shown by `token list`)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_token_create)
    ls = tsub.add_parser("list", parents=[common, target], help="tokens (never their secrets)")
    ls.add_argument("--team")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_token_list)
    r = tsub.add_parser("revoke", parents=[common, target], help="revoke a token by its id")
    r.add_argument("token_id", metavar="ID")
    r.set_defaults(func=cmd_token_revoke)
