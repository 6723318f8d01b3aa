"""The chart renders in every scenario, passes `helm lint --strict`, and holds what the issue lists."""

from __future__ import annotations

import base64
import json
from typing import Any

import helm_python as helm
import pytest
import yaml
from deploycheck.chart import CHART, KUBE_VERSIONS, SCENARIOS, Rendered, lint, load_scenario, render
from deploycheck.contracts import MINIMAL_SETTINGS, env_violations, settings_classes

SERVICES = ("api", "realtime", "llm-gateway", "worker")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_is_clean(scenario: str, kube_version: str) -> None:
    assert lint(load_scenario(scenario), kube_version=kube_version) == []


def test_lint_reports_a_bogus_value() -> None:
    findings = lint({"api": {"bogus": 1}}, kube_version="1.34")
    assert any("additional properties 'bogus' not allowed" in f for f in findings)


def test_default_install_has_every_object(default: Rendered) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in default.objects}
    for service in SERVICES:
        for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "ConfigMap"):
            assert (kind, f"chorus-{service}") in names
    expected = {
        ("Secret", "chorus-secrets"),
        ("StatefulSet", "chorus-postgres"),
        ("StatefulSet", "chorus-redis"),
        ("Service", "chorus-postgres"),
        ("Service", "chorus-redis"),
        ("Ingress", "chorus"),
        ("Ingress", "chorus-streaming"),
        ("ConfigMap", "chorus-dashboard"),
        ("Pod", "chorus-test-readiness"),
    }
    assert expected <= names
    assert len(default.of_kind("Job")) == 1
    # Opt-in objects are off by default.
    assert not default.kinds() & {
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "HTTPRoute",
    }
    assert "helm test chorus" in default.notes


def test_production_scenario_scales_isolates_and_monitors(production: Rendered) -> None:
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"} <= (
        production.kinds()
    )
    assert len(production.of_kind("HorizontalPodAutoscaler")) == 4
    # No bundled databases, and no Secret of ours: everything comes from existingSecret.
    assert not production.of_kind("StatefulSet")
    assert not production.of_kind("Secret")
    for obj, pod in production.pod_specs():
        for container in pod["containers"] + pod.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "chorus-production", (obj["metadata"]["name"], env)
    # HPA owns the replica count.
    for deployment in production.of_kind("Deployment"):
        assert "replicas" not in deployment["spec"]


def test_realtime_hpa_scales_on_connections(production: Rendered) -> None:
    hpa = production.get("HorizontalPodAutoscaler", "chorus-realtime")
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods[0]["pods"]["metric"]["name"] == "chorus_realtime_connections"
    assert {
        m["type"]
        for m in production.get("HorizontalPodAutoscaler", "chorus-api")["spec"]["metrics"]
    } == {"Resource"}


def test_gateway_api_scenario_has_httproute_and_no_ingress(scenarios: dict[str, Rendered]) -> None:
    rendered = scenarios["gateway-api"]
    assert not rendered.of_kind("Ingress")
    route = rendered.get("HTTPRoute", "chorus")
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]


def _routes() -> list[dict[str, Any]]:
    return yaml.safe_load((CHART / "files" / "routes.yaml").read_text())["routes"]  # type: ignore[no-any-return]


def test_ingress_and_httproute_follow_the_route_table(scenarios: dict[str, Rendered]) -> None:
    ingress_paths = {
        (p["path"], p["backend"]["service"]["name"], obj["metadata"]["name"])
        for obj in scenarios["default"].of_kind("Ingress")
        for rule in obj["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    expected = {
        (
            r["prefix"],
            f"chorus-{r['service']}",
            "chorus" if r["kind"] == "http" else "chorus-streaming",
        )
        for r in _routes()
    }
    assert ingress_paths == expected
    exact = {r["prefix"] for r in _routes() if r.get("exact")}
    for obj in scenarios["default"].of_kind("Ingress"):
        assert all(
            p["pathType"] == ("Exact" if p["path"] in exact else "Prefix")
            for rule in obj["spec"]["rules"]
            for p in rule["http"]["paths"]
        )
    route = scenarios["gateway-api"].get("HTTPRoute", "chorus")
    rules = {
        (
            r["matches"][0]["path"]["value"],
            r["backendRefs"][0]["name"],
            r["backendRefs"][0]["port"],
            "timeouts" in r,
            r["matches"][0]["path"]["type"],
        )
        for r in route["spec"]["rules"]
    }
    assert rules == {
        (
            r["prefix"],
            f"chorus-{r['service']}",
            8000,
            r["kind"] != "http",
            "Exact" if r.get("exact") else "PathPrefix",
        )
        for r in _routes()
    }


def test_streaming_annotations_only_on_streaming_paths(default: Rendered) -> None:
    plain = default.get("Ingress", "chorus")["metadata"].get("annotations", {})
    streaming = default.get("Ingress", "chorus-streaming")["metadata"]["annotations"]
    assert streaming["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(streaming["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(streaming["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert not any("proxy-buffering" in key for key in plain)
    assert default.get("Ingress", "chorus")["spec"]["ingressClassName"] == "nginx"


def test_no_sticky_sessions(scenarios: dict[str, Rendered]) -> None:
    for rendered in scenarios.values():
        text = rendered.manifest.lower()
        assert "affinity: clientip" not in text
        assert "session-cookie" not in text and 'affinity": "cookie' not in text
        assert "sessionpersistence" not in text
        for service in rendered.of_kind("Service"):
            assert service["spec"].get("sessionAffinity", "None") == "None"


def test_every_container_is_locked_down(scenarios: dict[str, Rendered]) -> None:
    for rendered in scenarios.values():
        for obj, pod in rendered.pod_specs():
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
            mounts_tmp = any(v["name"] == "tmp" and "emptyDir" in v for v in pod.get("volumes", []))
            for container in pod["containers"] + pod.get("initContainers", []):
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True, where
                assert sc["allowPrivilegeEscalation"] is False, where
                assert sc["capabilities"]["drop"] == ["ALL"], where
                assert sc["runAsNonRoot"] is True, where
                assert container["resources"]["limits"] and container["resources"]["requests"], (
                    where
                )
                if obj["kind"] != "Pod":
                    assert mounts_tmp and any(
                        m["mountPath"] == "/tmp" for m in container["volumeMounts"]
                    ), where


def test_service_pods_probe_roll_and_spread(default: Rendered) -> None:
    for service in SERVICES:
        deployment = default.get("Deployment", f"chorus-{service}")
        template = deployment["spec"]["template"]
        assert set(template["metadata"]["annotations"]) >= {"checksum/config", "checksum/secret"}
        pod = template["spec"]
        assert pod["serviceAccountName"] == f"chorus-{service}"
        assert len(pod["topologySpreadConstraints"]) == 2
        (container,) = pod["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        sa = default.get("ServiceAccount", f"chorus-{service}")
        assert sa["automountServiceAccountToken"] is False


def test_realtime_replicas_name_themselves_after_their_pod(default: Rendered) -> None:
    (container,) = default.get("Deployment", "chorus-realtime")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def _budget(rendered: Rendered, service: str) -> tuple[int, int]:
    deployment = rendered.get("Deployment", f"chorus-{service}")
    pod = deployment["spec"]["template"]["spec"]
    config = rendered.get("ConfigMap", f"chorus-{service}")["data"]
    pre_stop = (
        pod["containers"][0]
        .get("lifecycle", {})
        .get("preStop", {})
        .get("sleep", {})
        .get("seconds", 0)
    )
    spent = pre_stop + float(config["DRAIN_SECONDS"]) + float(config["GRACEFUL_TIMEOUT"])
    if service == "worker":
        spent += float(config["JOB_COMPLETION_WAIT"])
    return int(spent), pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("service", SERVICES)
def test_shutdown_budget_fits_the_grace_period(
    scenarios: dict[str, Rendered], service: str
) -> None:
    for rendered in scenarios.values():
        spent, grace = _budget(rendered, service)
        assert spent <= grace


def test_a_shutdown_budget_over_the_grace_period_refuses_to_render() -> None:
    with pytest.raises(helm.HelmError, match="exceeds terminationGracePeriodSeconds"):
        render({"realtime": {"shutdown": {"drainSeconds": 60}}})
    with pytest.raises(helm.HelmError, match="must be below terminationGracePeriodSeconds"):
        render({"worker": {"jobCompletionWaitSeconds": 60}})


def test_secrets_are_generated_for_every_key_and_kept_out_of_configmaps(default: Rendered) -> None:
    secret = default.get("Secret", "chorus-secrets")
    # The optional SMTP credentials are left out when unset: present but empty, the worker
    # would try to log in with them.
    assert set(secret["data"]) == {
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "GATEWAY_API_KEYS",
        "LLM_GATEWAY_API_KEY",
        "llm-providers.yaml",
    }
    for configmap in default.of_kind("ConfigMap"):
        for key in configmap.get("data", {}):
            assert key not in secret["data"] or key == "llm-providers.yaml", key
    # The gateway takes name:key entries, and the worker's key is one of them.
    key = base64.b64decode(secret["data"]["LLM_GATEWAY_API_KEY"]).decode()
    assert base64.b64decode(secret["data"]["GATEWAY_API_KEYS"]).decode() == f"worker:{key}"
    with_login = render({"secrets": {"smtpUsername": "chorus", "smtpPassword": "s3cret"}})
    assert {"SMTP_USERNAME", "SMTP_PASSWORD"} <= set(
        with_login.get("Secret", "chorus-secrets")["data"]
    )


def test_external_databases_are_required_without_bundled_ones() -> None:
    with pytest.raises(helm.HelmError, match="secrets.databaseUrl"):
        render({"postgres": {"enabled": False}})
    rendered = render(
        {
            "postgres": {"enabled": False},
            "redis": {"enabled": False},
            "secrets": {
                "databaseUrl": "postgres://u:p@db:5432/chorus",
                "redisUrl": "redis://r:6379/0",
            },
        }
    )
    assert not rendered.of_kind("StatefulSet")


def test_migrations_job_is_plain_on_install_and_a_pre_upgrade_hook_on_upgrade() -> None:
    (install,) = render().of_kind("Job")
    annotations = install["metadata"]["annotations"]
    assert "helm.sh/hook" not in annotations
    assert install["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "-m",
        "chorus_api",
        "migrate",
    ]
    (upgrade,) = render(is_upgrade=True).of_kind("Job")
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert upgrade["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
        "before-hook-creation,hook-succeeded"
    )
    # GitOps: never a hook; the name follows the spec, so a new image makes a new Job.
    (gitops,) = render({"migrations": {"useHelmHooks": False}}, is_upgrade=True).of_kind("Job")
    assert "helm.sh/hook" not in gitops["metadata"]["annotations"]
    (again,) = render({"migrations": {"useHelmHooks": False}}, is_upgrade=True).of_kind("Job")
    (newer,) = render({"migrations": {"useHelmHooks": False}, "image": {"tag": "0.2.0"}}).of_kind(
        "Job"
    )
    assert gitops["metadata"]["name"] == again["metadata"]["name"] != newer["metadata"]["name"]


def test_api_and_worker_wait_for_the_schema(default: Rendered) -> None:
    for service in ("api", "worker"):
        pod = default.get("Deployment", f"chorus-{service}")["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["python", "/etc/chorus/scripts/wait-for-schema.py"]
    script = default.get("ConfigMap", "chorus-scripts")["data"]["wait-for-schema.py"]
    assert script == (CHART / "files" / "wait-for-schema.py").read_text()
    for service in ("realtime", "llm-gateway"):
        assert (
            "initContainers"
            not in default.get("Deployment", f"chorus-{service}")["spec"]["template"]["spec"]
        )


def test_helm_test_pod_checks_every_service_through_its_service(default: Rendered) -> None:
    pod = default.get("Pod", "chorus-test-readiness")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"] == [
        f"http://chorus-{s}:8000/readyz" for s in SERVICES
    ]


def test_monitoring_objects_carry_extra_labels(production: Rendered) -> None:
    monitor = production.get("ServiceMonitor", "chorus")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["jobLabel"] == "chorus.io/job"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    rule = production.get("PrometheusRule", "chorus")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((CHART.parents[1] / "prometheus" / "chorus.rules.yaml").read_text())
    assert rule["spec"] == source
    selected = [
        s
        for s in production.of_kind("Service")
        if s["metadata"]["labels"].get("chorus.io/metrics") == "true"
    ]
    assert sorted(s["metadata"]["labels"]["chorus.io/job"] for s in selected) == sorted(
        f"chorus-{s}" for s in SERVICES
    )


def test_runbook_urls_come_from_a_value() -> None:
    base = "https://wiki.example.com/ops/chorus-runbook"
    rendered = render({"metrics": {"runbookUrl": base, "prometheusRule": {"enabled": True}}})
    source = yaml.safe_load((CHART.parents[1] / "prometheus" / "chorus.rules.yaml").read_text())
    sections = {
        r["alert"]: r["annotations"]["runbook_url"].split("#", 1)[1]
        for g in source["groups"]
        for r in g["rules"]
    }
    rules = rendered.get("PrometheusRule", "chorus")["spec"]["groups"]
    urls = {r["alert"]: r["annotations"]["runbook_url"] for g in rules for r in g["rules"]}
    assert urls == {alert: f"{base}#{section}" for alert, section in sections.items()}
    dashboard = json.loads(rendered.get("ConfigMap", "chorus-dashboard")["data"]["chorus.json"])
    assert [link["url"] for link in dashboard["links"] if link["title"] == "Runbook"] == [base]


def test_an_alerts_for_duration_comes_from_a_value_when_given() -> None:
    overrides = {"ChorusWorkerQueueLag": "30m", "ChorusTargetDown": "15s"}
    rendered = render({"metrics": {"prometheusRule": {"enabled": True, "forOverrides": overrides}}})
    source = yaml.safe_load((CHART.parents[1] / "prometheus" / "chorus.rules.yaml").read_text())
    expected = {r["alert"]: r["for"] for g in source["groups"] for r in g["rules"]}
    expected.update(overrides)
    rules = rendered.get("PrometheusRule", "chorus")["spec"]["groups"]
    assert {r["alert"]: r["for"] for g in rules for r in g["rules"]} == expected
    # A name that is no alert is a mistake to say out loud, not a setting to ignore.
    with pytest.raises(helm.HelmError, match="no alert named ChorusNoSuchAlert"):
        render(
            {
                "metrics": {
                    "prometheusRule": {"enabled": True, "forOverrides": {"ChorusNoSuchAlert": "1m"}}
                }
            }
        )
    with pytest.raises(helm.HelmError, match="forOverrides"):
        render({"metrics": {"prometheusRule": {"forOverrides": {"ChorusTargetDown": "soon"}}}})


def test_dashboard_configmap_is_labelled_for_grafana(default: Rendered) -> None:
    configmap = default.get("ConfigMap", "chorus-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (
        configmap["data"]["chorus.json"]
        == (CHART.parents[1] / "grafana" / "chorus.json").read_text()
    )


TRACING = {
    "endpoint": "http://otel-collector.observability:4318",
    "sampler": "parentbased_traceidratio",
    "samplerRatio": 0.25,
    "resourceAttributes": "k8s.cluster.name=eu-1",
    "headersSecret": "otlp-auth",
}


def test_tracing_is_off_unless_an_endpoint_is_set(scenarios: dict[str, Rendered]) -> None:
    for rendered in scenarios.values():
        for service in SERVICES:
            config = rendered.get("ConfigMap", f"chorus-{service}")["data"]
            assert not [name for name in config if name.startswith("OTEL_")]


def test_tracing_values_reach_every_service_alike() -> None:
    rendered = render({"tracing": TRACING})
    assert env_violations(rendered, settings_classes()) == []
    classes = settings_classes()
    for service in SERVICES:
        config = rendered.get("ConfigMap", f"chorus-{service}")["data"]
        assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == TRACING["endpoint"]
        assert config["OTEL_SERVICE_NAME"] == f"chorus-{service}"
        # One sampler for all: a trace is sampled in every service or in none.
        assert config["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert config["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        assert (
            config["OTEL_RESOURCE_ATTRIBUTES"] == "k8s.namespace.name=chorus,k8s.cluster.name=eu-1"
        )
        (container,) = rendered.get("Deployment", f"chorus-{service}")["spec"]["template"]["spec"][
            "containers"
        ]
        env = {e["name"]: e for e in container["env"]}
        assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"] == {
            "secretKeyRef": {"name": "otlp-auth", "key": "headers"}
        }
        # The service reads them as tracing on, with that sampler.
        settings = classes[service].model_validate(
            {k.lower(): v for k, v in config.items() if k.startswith("OTEL_")}
            | {"env": "dev", **MINIMAL_SETTINGS.get(service, {})}
        )
        assert settings.tracing_enabled  # type: ignore[attr-defined]
        assert settings.otel_traces_sampler_arg == 0.25  # type: ignore[attr-defined]


@pytest.mark.parametrize("endpoint", ["otel-collector:4317", "grpc://otel-collector:4317"])
def test_a_tracing_endpoint_that_is_not_an_http_url_refuses_to_render(endpoint: str) -> None:
    with pytest.raises(helm.HelmError):
        render({"tracing": {"endpoint": endpoint}})


def test_with_network_policies_every_service_may_reach_the_collector_only_when_tracing() -> None:
    isolated = {"networkPolicy": {"enabled": True}}
    untraced, traced = render(isolated), render(isolated | {"tracing": TRACING})

    def collector_egress(rendered: Rendered, service: str) -> list[Any]:
        policy = rendered.get("NetworkPolicy", f"chorus-{service}")["spec"]
        collector = {"port": 4318, "protocol": "TCP"}
        return [rule for rule in policy["egress"] if collector in rule["ports"]]

    for service in SERVICES:
        assert collector_egress(untraced, service) == []
        [rule] = collector_egress(traced, service)
        assert rule["to"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
        ]


def _env(rendered: Rendered, service: str) -> dict[str, Any]:
    """A service's environment: its ConfigMap's values and its secretKeyRefs."""
    pod = rendered.get("Deployment", f"chorus-{service}")["spec"]["template"]["spec"]
    env: dict[str, Any] = dict(rendered.get("ConfigMap", f"chorus-{service}")["data"])
    for item in pod["containers"][0].get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def test_sentinel_mode_runs_servers_and_sentinels_and_the_services_follow_them(
    scenarios: dict[str, Rendered],
) -> None:
    sentinel = scenarios["sentinel"]
    redis = sentinel.get("StatefulSet", "chorus-redis")
    assert redis["spec"]["replicas"] == 3
    pod = redis["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["redis", "sentinel"]
    assert pod["affinity"]["podAntiAffinity"]
    assert sentinel.get("PodDisruptionBudget", "chorus-redis")["spec"]["maxUnavailable"] == 1
    assert sentinel.get("Service", "chorus-redis-sentinel")["spec"]["ports"][0]["port"] == 26379
    for service in SERVICES:
        env = _env(sentinel, service)
        assert env["REDIS_SENTINELS"] == "chorus-redis-sentinel:26379"
        assert env["REDIS_SENTINEL_MASTER"] == "chorus"
        assert env["REDIS_PASSWORD"]["secretKeyRef"]["key"] == "REDIS_PASSWORD"
        assert "REDIS_URL" not in env  # it would name no server
    secret = sentinel.get("Secret", "chorus-secrets")["data"]
    assert (
        secret["REDIS_PASSWORD"] == sentinel.get("Secret", "chorus-redis")["data"]["REDIS_PASSWORD"]
    )
    # The servers and Sentinels reach each other; the services reach both ports.
    policy = sentinel.get("NetworkPolicy", "chorus-redis")["spec"]
    assert {p["port"] for p in policy["ingress"][0]["ports"]} == {6379, 26379}
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {6379, 26379}
    # The default stays one Redis.
    assert "REDIS_SENTINELS" not in _env(scenarios["default"], "api")


def test_external_sentinels_and_a_cluster_for_the_channels_are_values() -> None:
    rendered = render(
        {
            "postgres": {"enabled": False},
            "redis": {"enabled": False, "external": {"sentinels": "s1:26379,s2:26379"}},
            "secrets": {
                "databaseUrl": "postgres://u:p@db:5432/chorus",
                "redisPassword": "pw",
                "realtimeRedisCluster": "redis://:pw@rc:6379",
            },
            "networkPolicy": {"enabled": True, "redisCluster": {"enabled": True}},
        }
    )
    secret = rendered.get("Secret", "chorus-secrets")["data"]
    assert base64.b64decode(secret["REALTIME_REDIS_CLUSTER"]) == b"redis://:pw@rc:6379"
    assert base64.b64decode(secret["REDIS_PASSWORD"]) == b"pw"
    for service in SERVICES:
        env = _env(rendered, service)
        assert env["REDIS_SENTINELS"] == "s1:26379,s2:26379"
        assert env["REDIS_SENTINEL_MASTER"] == "mymaster"
        # Only the publishers read where the channels live.
        assert ("REALTIME_REDIS_CLUSTER" in env) == (service != "llm-gateway")
        ports = {
            p["port"]
            for rule in rendered.get("NetworkPolicy", f"chorus-{service}")["spec"]["egress"]
            for p in rule["ports"]
        }
        assert 26379 in ports
    with pytest.raises(helm.HelmError, match=r"redis.external.sentinels"):
        render({"redis": {"enabled": False}})
