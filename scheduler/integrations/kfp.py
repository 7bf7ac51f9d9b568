"""Kubeflow Pipelines v2 components (``pip install 'carbonsched[kfp]'``): plan, then run the job under
the tracker.

- ``plan_placement``: a Python component that plans the job (its TOML text: a pod gets no files)
  under the policy (TOML text, or the ``policy`` setting of the image) and outputs the placement as
  parameters (``region_id``, ``instance_type``, ``start``, ``kg_co2e``, ``saving_vs_baseline_pct``
  (0.0 also when the plan has no baseline: ``placement_json`` then says null), ``placement_json``),
  plus the plan as a JSON artifact (``plan``) and a markdown table (``report``, shown in the KFP
  UI). ``wait=True`` makes it sleep until the start before it returns (re-planning once; the step
  holds a small pod, not the GPU node the training step asks for). KFP itself has no deferral:
  for long waits, schedule the pipeline with a recurring run at the hours ``carbonsched plan``
  suggests, or submit the job with ``carbonsched submit`` and let the agent start it.
- ``tracked_job``: a container component that runs ``sh -c COMMAND`` under
  ``carbonsched track --mark --out MEASUREMENT --region REGION --``: the exit status passes
  through, the measurement (energy, kgCO2e, where it ran) is the ``measurement`` output and is also
  printed, marked, on the log.

Both run in an image with carbonsched installed: ``DEFAULT_IMAGE`` (built from this repository's
Dockerfile: ``docker build -t carbonsched:0.1.0 .``; push it where your cluster pulls from) unless
you make them with ``plan_component(image)`` / ``tracked_job_component(image)``; for the training
step that is your training image with ``pip install carbonsched`` added.

(No ``from __future__ import annotations`` here: KFP reads the components' annotations as types.)
"""
from typing import NamedTuple

from kfp import dsl

DEFAULT_IMAGE = "carbonsched:0.1.0"


def carbonsched_plan(plan: dsl.Output[dsl.Artifact], report: dsl.Output[dsl.Markdown], job_toml: str,
                    policy_toml: str = "", now: str = "", max_wait_hours: float = 24.0, top: int = 5,
                    wait: bool = False) -> NamedTuple("Placement", [("region_id", str), ("instance_type", str),
                                                                    ("start", str), ("kg_co2e", float),
                                                                    ("saving_vs_baseline_pct", float),
                                                                    ("placement_json", str)]):
    """Plan the job under the policy; output the placement (see carbonsched.integrations.kfp)."""
    # a KFP component's body runs alone in its pod: its imports are here
    import json
    from collections import namedtuple

    from carbonsched.integrations.placement import plan_step

    best, markdown, document = plan_step(job_toml, policy_toml, now, max_wait_hours, top, wait)
    with open(plan.path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(markdown)
    out = namedtuple("Placement", ["region_id", "instance_type", "start", "kg_co2e", "saving_vs_baseline_pct",
                                   "placement_json"])
    saving = best["saving_vs_baseline_pct"]
    return out(best["region_id"], best["instance_type"], best["start"], float(best["kg_co2e"]),
               float(saving) if saving is not None else 0.0, json.dumps(best))


def plan_component(image: str = DEFAULT_IMAGE):
    """The plan component running in ``image`` (carbonsched installed; KFP adds its own package)."""
    return dsl.component(carbonsched_plan, base_image=image)


def tracked_job_component(image: str = DEFAULT_IMAGE):
    """The tracked-run container component running in ``image`` (it must have ``carbonsched`` and ``sh``)."""

    @dsl.container_component
    def carbonsched_tracked_job(command: str, region_id: str, measurement: dsl.OutputPath(str)):
        """Run ``sh -c command`` under carbonsched's tracker in the planned region's grid."""
        return dsl.ContainerSpec(image=image,
                                 command=["carbonsched", "track", "--mark", "--out", measurement, "--region", region_id,
                                          "--"],
                                 args=["sh", "-c", command])

    return carbonsched_tracked_job


plan_placement = plan_component()
tracked_job = tracked_job_component()
