"""Example Kubeflow Pipelines v2 pipeline: plan under the policy, then train under the tracker.

    pip install 'carbonsched[kfp]'
    python examples/pipelines/kfp_pipeline.py            # writes examples/pipelines/kfp_pipeline.yaml
    python examples/pipelines/kfp_pipeline.py --run http://KFP-HOST   # compiles, then starts a run there

The job and the policy travel as TOML text (pipeline parameters), because a pod gets no files. They
have no defaults in the pipeline: kfp 2.17 writes a multi-line default into the YAML's header
comment unescaped, which breaks the YAML; pass them when you start a run (``arguments`` below). The
training step receives the planned region (and could pick its node pool or cluster from it). The
images must have carbonsched installed (carbonsched.integrations.kfp.DEFAULT_IMAGE: build it from
this repository's Dockerfile, or pass your own to plan_component()/tracked_job_component()).
"""
from pathlib import Path

from kfp import compiler, dsl

from carbonsched.integrations.kfp import plan_placement, tracked_job

HERE = Path(__file__).resolve().parent
JOB_TOML = (HERE / "train_job.toml").read_text(encoding="utf-8")
POLICY_TOML = (HERE.parent / "policy.toml").read_text(encoding="utf-8")
YAML = HERE / "kfp_pipeline.yaml"


@dsl.pipeline(name="carbonsched-green-training",
              description="Plan the job's greenest placement under the policy, then run it under carbonsched's tracker.")
def green_training(job_toml: str, policy_toml: str = "", command: str = "python train.py", now: str = "") -> str:
    plan = plan_placement(job_toml=job_toml, policy_toml=policy_toml, now=now, max_wait_hours=24.0)
    train = tracked_job(command=command, region_id=plan.outputs["region_id"])
    train.set_display_name("train (tracked)")
    return train.outputs["measurement"]


if __name__ == "__main__":
    import sys

    compiler.Compiler().compile(green_training, package_path=str(YAML))
    print(f"wrote {YAML}")
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        from kfp import Client

        run = Client(host=sys.argv[2]).create_run_from_pipeline_package(
            str(YAML), arguments={"job_toml": JOB_TOML, "policy_toml": POLICY_TOML})
        print(f"started run {run.run_id}")
