"""Renders charts/suti with Helm's own engine for the values that exercise each promise of the chart,
validates the manifests against the Kubernetes 1.30 schemas and asserts on them. Run by
scripts/check-deploy (with the virtual environment that holds helm-python-sdk and
kubernetes-validate); the first argument is a folder for the rendered files."""

import copy
import json
import pathlib
import re
import subprocess
import sys

import helm_python as helm
import yaml

OUT = pathlib.Path(sys.argv[1])
CHART = pathlib.Path("charts/suti")
STAGES = ["crawler-clusterer", "expert-finetuner", "generator", "clip-filter", "apprentice-trainer"]
# serving drains requests in flight for this long (services/serving/src/http.rs, DRAIN_DEADLINE).
SERVING_DRAIN_SECS = 30
problems = []


def merge(base, over):
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())


def render(values):
    with helm.Chart.load(str(CHART)) as loaded:
        docs = loaded.render(values, name="suti", namespace="suti", is_install=True)
    return "".join(f"---\n# Source: {p}\n{d.strip()}\n" for p, d in sorted(docs.items()) if d.strip())


def manifests(text):
    return [d for d in yaml.safe_load_all(text) if d]


def refused(values, why):
    """The chart (its schema or a `fail`) must refuse these values."""
    try:
        render(values)
    except helm.HelmError:
        return
    problems.append(f"the chart accepted {why}")


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def pod_workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def component(doc):
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def compiled_graces():
    """stages.<stage>.shutdown_grace_secs from the compiled-in configuration."""
    defaults = yaml.safe_load(pathlib.Path("shared/suti-runtime/src/config/default.yaml").read_text())
    return {name.replace("_", "-"): stage["shutdown_grace_secs"] for name, stage in defaults["stages"].items()}


GRACES = compiled_graces()

renders = {
    "default": render({}),
    "production": render(PRODUCTION),
    "production-on-cpu": render(merge(PRODUCTION, {"image": {"variant": "cpu"}, "config": {"models": {"device": "cpu"}}})),
}
STANDARD = {
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/suti"}},
    "podAnnotations": {"example.com/team": "ml"},
    "podLabels": {"team": "ml"},
    "defaults": {
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "suti"}}}],
        "extraEnv": [{"name": "EXTRA_FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    },
    "services": {"serving": {"image": {"repository": "registry.example.com/suti-serving", "tag": "1.2.3"},
                             "podAnnotations": {"example.com/serving": "yes"},
                             "hpa": {"enabled": True}}},
    "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "suti.example.com"}],
                "tls": [{"secretName": "tls", "hosts": ["suti.example.com"]}]},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "gw"}], "hostnames": ["suti.example.com"]},
    "monitoring": {"assumeApi": True, "labels": {"release": "kube-prometheus-stack"},
                   "serviceMonitor": {"labels": {"team": "ml"}}},
}
renders["standard-values"] = render(STANDARD)

for name, text in renders.items():
    path = OUT / f"chart-{name}.yaml"
    path.write_text(text)
    checked = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.30.0", "--strict", "--no-warn", "--quiet", str(path)],
        capture_output=True, text=True)
    if checked.returncode != 0:
        problems.append(f"{name} values: manifests fail the Kubernetes schemas:\n{checked.stdout}{checked.stderr}")

docs = {name: manifests(text) for name, text in renders.items()}

# Every pod runs as non-root, without privilege escalation, on a read-only root filesystem.
for name, rendered in docs.items():
    for doc in pod_workloads(rendered):
        pod = doc["spec"]["template"]["spec"]
        where = f"{name} values: {doc['kind']} {doc['metadata']['name']}"
        pod_context = pod.get("securityContext") or {}
        if pod_context.get("runAsNonRoot") is not True or pod_context.get("runAsUser") == 0:
            problems.append(f"{where}: the pod may run as root")
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            context = container.get("securityContext") or {}
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: {container['name']} may escalate privileges")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: {container['name']} has a writable root filesystem")
            if context.get("runAsUser") == 0:
                problems.append(f"{where}: {container['name']} runs as root")

kinds = {d["kind"] for d in docs["production"]}
for kind in ["Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "ScaledObject", "TriggerAuthentication",
             "ServiceMonitor", "PrometheusRule", "Job", "NetworkPolicy", "Ingress"]:
    if kind not in kinds:
        problems.append(f"production values render no {kind}")

# 1. GPUs are requested only where the models run on CUDA, and CUDA only where a GPU is requested.
for name, rendered in docs.items():
    cuda_values = name == "production"
    gpu_pods = set()
    for doc in pod_workloads(rendered):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        resources = container.get("resources", {})
        gpus = any("nvidia.com/gpu" in (resources.get(k) or {}) for k in ("requests", "limits"))
        device = env_of(container).get("SUTI__MODELS__DEVICE")
        where = f"{name} values: {doc['kind']} {doc['metadata']['name']}"
        if gpus:
            gpu_pods.add(component(doc))
        if gpus != (device or "").startswith("cuda"):
            problems.append(f"{where}: requests {'a' if gpus else 'no'} GPU but runs its models on {device!r}")
    if not cuda_values and gpu_pods:
        problems.append(f"{name} values (models.device cpu): GPUs requested by {sorted(gpu_pods)}")
    if cuda_values and not {"expert-finetuner", "generator", "apprentice-trainer", "serving", "train-base"} <= gpu_pods:
        problems.append(f"{name} values (models.device cuda): GPU stages without a GPU: {sorted(gpu_pods)}")
refused(merge(PRODUCTION, {"services": {"generator": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}}),
        "a raw nvidia.com/gpu resource (use `gpu`, which follows models.device)")
refused({"config": {"models": {"device": "cuda"}}}, "models.device cuda with the CPU image")

# 2. Kubernetes waits longer than the process's own grace; KEDA counts unacknowledged messages.
for name, rendered in docs.items():
    for doc in of_kind(rendered, "Deployment"):
        what = component(doc)
        pod = doc["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        if what == "serving":
            grace = SERVING_DRAIN_SECS
        else:
            key = f"SUTI__STAGES__{what.replace('-', '_').upper()}__SHUTDOWN_GRACE_SECS"
            grace = int(env.get(key) or GRACES[what])
        termination = pod.get("terminationGracePeriodSeconds")
        if termination is None or termination <= grace:
            problems.append(f"{name} values: {what}'s terminationGracePeriodSeconds {termination} "
                            f"is not longer than its shutdown grace ({grace} s)")
    for scaled in of_kind(rendered, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] != "rabbitmq" or meta.get("protocol") != "http" or \
                    meta.get("excludeUnacknowledged", "false") != "false":
                problems.append(f"{name} values: ScaledObject {scaled['metadata']['name']} counts ready "
                                "messages only (needs protocol http, unacknowledged included)")
        for field in ("cooldownPeriod", "pollingInterval", "fallback"):
            if field not in scaled["spec"]:
                problems.append(f"{name} values: ScaledObject {scaled['metadata']['name']} has no {field}")
for auth in of_kind(docs["production"], "TriggerAuthentication"):
    keys = [ref["key"] for ref in auth["spec"]["secretTargetRef"]]
    if keys != [PRODUCTION.get("defaults", {}).get("autoscaling", {}).get("managementUrlKey",
                                                                           "SUTI_RABBITMQ_MANAGEMENT_URL")]:
        problems.append(f"TriggerAuthentication reads {keys}, not the management API's address")
# compose stops a stage no sooner than its grace allows.
compose_config = yaml.safe_load(subprocess.run(
    [sys.argv[2], "-f", "compose.yaml", "--profile", "suti", "config"], capture_output=True, text=True,
    check=True).stdout)
for what in STAGES + ["serving"]:
    period = compose_config["services"][what].get("stop_grace_period")
    seconds = None
    if period:
        match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", period)
        seconds = int(match.group(1) or 0) * 60 + int(match.group(2) or 0) if match else None
    grace = SERVING_DRAIN_SECS if what == "serving" else GRACES[what]
    if seconds is None or seconds <= grace:
        problems.append(f"compose.yaml: {what}'s stop_grace_period {period!r} is not longer than its grace ({grace} s)")

# 3. Upgrades: Job names follow their spec; the single-writer trainer never overlaps itself.
def job_names(values):
    return sorted(d["metadata"]["name"] for d in of_kind(manifests(render(values)), "Job"))


same = job_names(PRODUCTION)
if same != job_names(copy.deepcopy(PRODUCTION)):
    problems.append("the same values name the training Jobs differently (an upgrade would train again)")
changed = job_names(merge(PRODUCTION, {"jobs": {"trainBase": {"args": ["--steps", "30000"]}}}))
if [n for n in changed if "train-base" in n] == [n for n in same if "train-base" in n]:
    problems.append("new training arguments keep the Job's name: `helm upgrade` would fail on its immutable template")
if len(same) != 2:
    problems.append(f"production values render Jobs {same}")
for doc in of_kind(docs["production"], "Job"):
    if any(k.startswith("helm.sh/hook") for k in (doc["metadata"].get("annotations") or {})):
        problems.append(f"Job {doc['metadata']['name']} is a hook (it would run on every upgrade)")
    if "ttlSecondsAfterFinished" in doc["spec"]:
        problems.append(f"Job {doc['metadata']['name']} deletes itself (the next upgrade would train again)")
for name, rendered in docs.items():
    for doc in of_kind(rendered, "Deployment"):
        if component(doc) == "apprentice-trainer":
            if (doc["spec"].get("strategy") or {}).get("type") != "Recreate" or doc["spec"].get("replicas") != 1:
                problems.append(f"{name} values: the apprentice-trainer is not one replica replaced with Recreate")
refused({"services": {"apprentice-trainer": {"replicas": 2}}}, "two apprentice-trainer replicas")
refused({"services": {"apprentice-trainer": {"autoscaling": {"enabled": True}}}}, "an autoscaled apprentice-trainer")
rolling = manifests(render({"services": {"apprentice-trainer": {"strategy": {"type": "RollingUpdate"}}}}))
if any(component(d) == "apprentice-trainer" and d["spec"]["strategy"]["type"] != "Recreate"
       for d in of_kind(rolling, "Deployment")):
    problems.append("a RollingUpdate strategy given for the apprentice-trainer is not replaced with Recreate")

# 4. Monitoring: configurable labels for kube-prometheus-stack's selectors; dashboards as ConfigMaps.
labelled = docs["standard-values"]
for kind in ("ServiceMonitor", "PrometheusRule"):
    found = of_kind(labelled, kind)
    if not found:
        problems.append(f"monitoring values render no {kind}")
    for doc in found:
        if doc["metadata"]["labels"].get("release") != "kube-prometheus-stack":
            problems.append(f"{kind} {doc['metadata']['name']} lacks monitoring.labels")
for doc in of_kind(labelled, "ServiceMonitor"):
    if doc["metadata"]["labels"].get("team") != "ml":
        problems.append(f"ServiceMonitor {doc['metadata']['name']} lacks monitoring.serviceMonitor.labels")
    targets = {r["targetLabel"] for r in doc["spec"]["endpoints"][0]["relabelings"]}
    if not {"service", "job", "suti_release"} <= targets:
        problems.append(f"ServiceMonitor {doc['metadata']['name']} does not label service, job and suti_release")
dashboards = [d for d in of_kind(labelled, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
shipped = sorted(p.name for p in (CHART / "files/dashboards").glob("*.json"))
if sorted(k for d in dashboards for k in d["data"]) != shipped:
    problems.append(f"dashboard ConfigMaps hold {[list(d['data']) for d in dashboards]}, not {shipped}")
for doc in dashboards:
    if doc["metadata"]["labels"].get("release") != "kube-prometheus-stack":
        problems.append(f"dashboard ConfigMap {doc['metadata']['name']} lacks monitoring.labels")

# 6. NetworkPolicies: every pod is covered; only the crawler reaches the web; serving needs a key.
for name in ("default", "production"):
    policies = of_kind(docs[name], "NetworkPolicy")
    covered = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p for p in policies}
    for doc in pod_workloads(docs[name]):
        what = component(doc)
        policy = covered.get(what)
        if not policy or set(policy["spec"]["policyTypes"]) != {"Ingress", "Egress"}:
            problems.append(f"{name} values: no ingress and egress NetworkPolicy for {what}")
            continue
        web = any(block.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" and
                  {p["port"] for p in rule.get("ports", [])} & {80}
                  for rule in policy["spec"]["egress"] for block in rule.get("to", []))
        if web != (what == "crawler-clusterer"):
            problems.append(f"{name} values: {what} {'reaches' if web else 'cannot reach'} the web")
        opened = {p["port"] for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}
        if not opened <= ({9090, 8080} if what == "serving" else {9090}):
            problems.append(f"{name} values: {what} accepts connections on {sorted(opened)}")
    config = next(d for d in of_kind(docs[name], "ConfigMap") if d["metadata"]["name"].endswith("-config"))
    if (yaml.safe_load(config["data"]["config.yaml"]).get("serving") or {}).get("require_api_key") is not True:
        problems.append(f"{name} values: serving does not require an API key")

# 5. Standard values reach the manifests (and the schema accepts them).
standard = docs["standard-values"]
serving = next(d for d in of_kind(standard, "Deployment") if component(d) == "serving")
pod = serving["spec"]["template"]
checks = {
    "imagePullSecrets": pod["spec"].get("imagePullSecrets") == [{"name": "regcred"}],
    "per-service image": pod["spec"]["containers"][0]["image"] == "registry.example.com/suti-serving:1.2.3",
    "podAnnotations": pod["metadata"]["annotations"].get("example.com/team") == "ml"
                      and pod["metadata"]["annotations"].get("example.com/serving") == "yes",
    "podLabels": pod["metadata"]["labels"].get("team") == "ml",
    "topologySpreadConstraints": bool(pod["spec"].get("topologySpreadConstraints")),
    "extraEnv": "EXTRA_FROM_SECRET" in env_of(pod["spec"]["containers"][0]),
    "extraVolumes": any(v["name"] == "ca" for v in pod["spec"]["volumes"])
                    and any(m["name"] == "ca" for m in pod["spec"]["containers"][0]["volumeMounts"]),
    "serviceAccount.annotations": any(d["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
                                      for d in of_kind(standard, "ServiceAccount")),
    "ingress": bool(of_kind(standard, "Ingress")),
    "httpRoute": bool(of_kind(standard, "HTTPRoute")),
    "serving hpa": bool(of_kind(standard, "HorizontalPodAutoscaler")) and "replicas" not in serving["spec"],
}
for what, ok in checks.items():
    if not ok:
        problems.append(f"standard values: {what} does not reach the manifests")
# The schema is enforced: a wrong type or an unknown key is refused before anything renders.
refused({"services": {"serving": {"replicas": "three"}}}, "replicas: three")
refused({"services": {"serving": {"replica": 3}}}, "an unknown key (services.serving.replica)")
refused({"config": {"models": {"device": "gpu"}}}, "models.device gpu")

# 8. The runbooks and the deployment guide name values and files that exist: every `path` that starts with a
# top-level key of the chart (or follows "the chart's") resolves in values.schema.json; <stage> and
# <service> stand for any service.
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
TOP = set(SCHEMA["properties"]) - {"config"}


def resolves(node, keys):
    if "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        return any(resolves(n, keys) for n in node["anyOf"] if n.get("type") != "null")
    if not keys:
        return True
    props = node.get("properties")
    if props is None:
        # A free-form map (labels, resources' quantities, config): anything below it exists.
        return node.get("type") == "object" or "additionalProperties" in node
    key, rest = keys[0], keys[1:]
    if key.startswith("<") and key.endswith(">"):
        return any(resolves(n, rest) for n in props.values())
    return key in props and resolves(props[key], rest)


for page in sorted(pathlib.Path("runbooks").glob("*.md")) + [pathlib.Path("docs/deploy.md")]:
    text = page.read_text()
    for match in re.finditer(r"(the chart's )?`([A-Za-z][\w<>-]*(?:\.[\w<>-]+)+)`", text):
        path = match.group(2)
        keys = path.split(".")
        if keys[0] == "config" or keys[-1] in ("com", "io") or not (keys[0] in TOP or match.group(1)):
            continue
        if not resolves(SCHEMA, keys):
            problems.append(f"{page}: `{path}` is not a value of the chart")
    # Files the page names (an override file, a configuration) are shipped.
    for match in re.finditer(r"`([\w./-]+\.(?:ya?ml|json|md))`", text):
        named = match.group(1)
        if "/" not in named.strip("./") and not named.startswith("compose"):
            continue
        if not (pathlib.Path(named).exists() or (page.parent / named).exists()):
            problems.append(f"{page}: names `{named}`, which is not in the repository")

for p in problems:
    print("check-deploy:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
