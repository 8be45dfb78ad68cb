"""Run AWS Batch multi-container (``ecsProperties``, Fargate) sidecar jobs from Apache Airflow."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe this package to Airflow's provider manager."""
    return {
        "package-name": "airflow-sidecar-batch",
        "name": "Sidecar Batch",
        "description": "AWS Batch multi-container jobs: register, submit, defer, stream logs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "AWS Batch multi-container jobs",
                "external-doc-url": (
                    "https://docs.aws.amazon.com/batch/latest/userguide/multi-container-jobs.html"
                ),
                "tags": ["aws"],
            }
        ],
        "operators": [
            {
                "integration-name": "AWS Batch multi-container jobs",
                "python-modules": ["airflow_sidecar_batch.operators"],
            }
        ],
        "triggers": [
            {
                "integration-name": "AWS Batch multi-container jobs",
                "python-modules": ["airflow_sidecar_batch.triggers"],
            }
        ],
        "extra-links": [
            "airflow_sidecar_batch.links.FirstContainerLogsLink",
            "airflow_sidecar_batch.links.SecondContainerLogsLink",
        ],
    }
