"""Tenants sharing one server: namespacing plus checks in the SDK (RELIABILITY.md, security rows)."""

from __future__ import annotations

from typing import Any

import pytest

from taskq_sdk import Client, ConfigurationError, JobNotFound
from taskq_sdk.config import Settings

from .conftest import figure

pytestmark = pytest.mark.security


def test_tenant_b_cannot_see_wait_on_cancel_or_list_tenant_a_jobs(settings: Settings, worker: Any) -> None:
    leaks = 0
    with Client(settings=settings, tenant="acme") as a, Client(settings=settings, tenant="globex") as b:
        job = a.submit("slow", 40, step=0.05)
        assert job.id.startswith("acme:")
        for ident in (job.id, job.id.split(":", 1)[1]):
            with pytest.raises(JobNotFound):
                b.job(ident)
        assert job.id not in {j.id for j in b.jobs()}
        with pytest.raises(JobNotFound):
            b.job(job.id)
        # even a handle forged from A's id is blind for B
        from taskq_sdk.handles import AsyncJob, Job

        with pytest.raises(JobNotFound):
            Job(AsyncJob(b.async_client, job.id, known=False), b)
        assert job.result(timeout=10) == 40, "B's cancel did not touch A's job"
        assert job.id in {j.id for j in a.jobs()}
        leaks += int(job.id in {j.id for j in b.jobs(limit=1000)})
    figure("cross_tenant_leaks", leaks)


def test_same_job_id_in_two_tenants_is_two_jobs(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, tenant="acme") as a, Client(settings=settings, tenant="globex") as b:
        ja = a.submit("add", 1, 1, _job_id="report-1")
        jb = b.submit("add", 2, 2, _job_id="report-1")
        assert ja.created and jb.created
        assert ja.id == "acme:report-1" and jb.id == "globex:report-1"
        assert ja.result(timeout=10) == 2 and jb.result(timeout=10) == 4
        assert a.job("report-1").result() == 2
        assert b.job("report-1").result() == 4


def test_bound_client_refuses_to_act_for_another_tenant(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, tenant="acme") as a:
        with pytest.raises(ConfigurationError, match="bound to tenant 'acme'"):
            a.submit("add", 1, 2, tenant="globex")
        with pytest.raises(ConfigurationError):
            a.jobs(tenant="globex")


def test_unbound_client_resolves_any_full_id_and_default_is_separate(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, tenant="acme") as a, Client(settings=settings) as ops:
        job = a.submit("add", 3, 4)
        assert ops.job(job.id).result(timeout=10) == 7
        plain = ops.submit("add", 5, 5)
        assert ":" not in plain.id, "the default tenant's ids carry no prefix (plain arq jobs are default)"
        with pytest.raises(JobNotFound):
            a.job(plain.id)


def test_functions_that_declare_tenant_and_workspace_receive_them(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, tenant="acme", workspace="exp1") as a:
        out = a.submit("tenant_echo").result(timeout=10)
        assert out["tenant"] == "acme" and out["workspace"] == "exp1"
        assert out["job_id"].startswith("acme:")
        other_ws = a.submit("tenant_echo", workspace="exp2").result(timeout=10)
        assert other_ws["workspace"] == "exp2"
    with Client(settings=settings) as ops:
        out = ops.submit("tenant_echo", tenant="initech", workspace="w").result(timeout=10)
        assert out == {"tenant": "initech", "workspace": "w", "job_id": out["job_id"]}
        assert out["job_id"].startswith("initech:")
