"""Embedding carbonsched in MLOps pipelines (docs/pipelines.md): one module per outside system,
each an optional extra whose package is imported only inside the functions that use it, so
``carbonsched plan`` never loads any of them.

``placement``      what every pipeline integration shares (job and policy in, plan, summary, markdown)
``mlflow``         log a plan and a tracked run to an MLflow run (``carbonsched[mlflow]``)
``github_action``  the script of the repository's GitHub Action (``action.yml``)
``airflow``        deferrable ``WaitForGreenWindowOperator`` and ``CarbonschedSubmitOperator`` (``carbonsched[airflow]``)
``prefect``        tasks ``plan_placement``, ``wait_for_green_window``, ``submit_job`` (``carbonsched[prefect]``)
``kfp``            Kubeflow Pipelines components ``plan_placement`` and ``tracked_job`` (``carbonsched[kfp]``)
"""
