"""`python -m agentry_testing.gcp_fakes` as a process: preloaded secrets, both services, clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys

import grpc  # type: ignore[import-untyped]
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import scheduler_v1, secretmanager_v1
from google.cloud.scheduler_v1.services.cloud_scheduler.transports import CloudSchedulerGrpcTransport
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

pytestmark = pytest.mark.integration


def test_fakes_as_a_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentry_testing.gcp_fakes",
            "--port",
            "0",
            "--secret",
            "projects/p/secrets/s=v1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        channel = grpc.insecure_channel(address)
        secrets = secretmanager_v1.SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        )
        secret = secrets.access_secret_version(name="projects/p/secrets/s/versions/latest", timeout=10)
        assert (secret.name, secret.payload.data) == ("projects/p/secrets/s/versions/1", b"v1")

        scheduler = scheduler_v1.CloudSchedulerClient(
            transport=CloudSchedulerGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        )
        job = scheduler_v1.Job(
            name="projects/p/locations/l/jobs/j",
            schedule="*/5 * * * *",
            http_target=scheduler_v1.HttpTarget(uri="https://example.com/run"),
        )
        created = scheduler.create_job(parent="projects/p/locations/l", job=job, timeout=10)
        assert created.state == scheduler_v1.Job.State.ENABLED
        assert [j.name for j in scheduler.list_jobs(parent="projects/p/locations/l", timeout=10)] == [
            job.name
        ]
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
