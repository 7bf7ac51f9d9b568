"""``carbonsched regions``: where a GPU type is offered, greenest first."""
from __future__ import annotations

import argparse
import json

from carbonsched.cli._common import PROVIDERS


def cmd_regions(a: argparse.Namespace) -> int:
    from carbonsched.planning.regions import list_regions
    from carbonsched.providers.cloud import choose_offering_source
    from carbonsched.settings import resolve_settings

    settings = resolve_settings()
    rows = list_regions(gpu=a.gpu, provider=a.provider, offerings_source=choose_offering_source(settings),
                        kube_contexts=settings.kubernetes_contexts)
    if a.json:
        print(json.dumps({"schema_version": 1, "gpu": a.gpu, "provider": a.provider, "regions": rows}, indent=2))
    elif not rows:
        print(f"no region offers {a.gpu or 'GPUs'}" + (f" on {a.provider}" if a.provider else ""))
    else:
        from carbonsched.cli.render import render_regions

        print(render_regions(rows))
    return 0


def register(sub, common) -> None:
    r = sub.add_parser("regions", parents=[common], help="where a GPU type is offered, with grid intensity and price",
                       description="List regions offering a GPU type, greenest (yearly mean intensity) first: the "
                       "catalog's cloud regions and the Kubernetes contexts of the config file "
                       "([kubernetes.contexts.NAME], listed as kubernetes:NAME).")
    r.add_argument("--gpu", help="GPU type, e.g. H100 (default: any)")
    r.add_argument("--provider", choices=PROVIDERS)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_regions)
