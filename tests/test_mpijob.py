"""launch/mpijob.yaml: a Kubeflow MPIJob (kubeflow.org/v2beta1) for distnet.

Checked two ways, without a Kubernetes cluster:

* against the MPI Operator's published CRD schema (its ``openAPIV3Schema``
  for v2beta1) the way the API server and ``kubectl --validate=strict`` read
  it: types, enums, required fields, integer-or-string fields, list-map keys
  unique, and no field the schema does not declare (Kubernetes would drop it
  silently).  The CRD file is third-party data kept outside the repository:
  ``DISTNET_MPIJOB_CRD=FILE``, else ``../shared/fixtures/mpi-operator/
  kubeflow.org_mpijobs.yaml`` beside the clone (as CI lays it out);
* against the image it runs: the entry point's roles, sshAuthMountPath, the
  sshd port, the grace period of docker/compose.yaml.

The validator is first shown to reject a broken manifest, so a pass means
something.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (test extra) reads the manifest")

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "launch" / "mpijob.yaml"
ENTRY = REPO / "docker" / "entrypoint.sh"
COMPOSE = REPO / "docker" / "compose.yaml"
SHARED_CRD = REPO.parent / "shared" / "fixtures" / "mpi-operator" / "kubeflow.org_mpijobs.yaml"


def _crd_path() -> Path | None:
    given = os.environ.get("DISTNET_MPIJOB_CRD")
    if given:
        if not Path(given).is_file():
            pytest.fail(f"DISTNET_MPIJOB_CRD={given} is not a file")
        return Path(given)
    return SHARED_CRD if SHARED_CRD.is_file() else None


def _manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


# ---------------------------------------------------------------- the CRD's schema

def _json_schema(node):
    """The structural schema as JSON Schema, with kubectl's strictness made explicit."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items()
           if k not in ("description", "default", "example")}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not preserve:
        out["additionalProperties"] = False  # an undeclared field is an error, not dropped
    return out


def _list_map_errors(schema: dict, value, path: str) -> list[str]:
    """Duplicates in list-type map/set lists (the API server refuses them)."""
    errors: list[str] = []
    if not isinstance(schema, dict):
        return errors
    if isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        if kind == "map" and keys:
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            errors += [f"{path}: duplicate {keys} {key}" for key in set(seen) if seen.count(key) > 1]
        if kind == "set":
            reprs = [repr(v) for v in value]
            errors += [f"{path}: duplicate item {r}" for r in set(reprs) if reprs.count(r) > 1]
        for i, item in enumerate(value):
            errors += _list_map_errors(schema.get("items", {}), item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            errors += _list_map_errors(sub or {}, item, f"{path}.{key}")
    return errors


@pytest.fixture(scope="module")
def mpijob_schema() -> dict:
    path = _crd_path()
    if path is None:
        reason = (f"the MPI Operator's CRD is not at {SHARED_CRD} (third-party data, kept in "
                  f"shared/ and not in the repository) and DISTNET_MPIJOB_CRD is unset")
        print(f"\nskipped: {reason}")
        # Justified skip: the CRD is third-party data that this workplace allows only under the
        # steering repo's shared/, never in a developer's commit; the manifest's own structure is
        # still checked by the tests that need no schema.  Place the file there to run these.
        pytest.skip(reason)
    crd = yaml.safe_load(path.read_text())
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "kubeflow.org"
    assert crd["spec"]["names"]["kind"] == "MPIJob"
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert "v2beta1" in versions and versions["v2beta1"]["served"], sorted(versions)
    return versions["v2beta1"]["schema"]["openAPIV3Schema"]


def _errors(schema: dict, doc: dict) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) validates it")
    validator = jsonschema.Draft4Validator(_json_schema(schema))
    found = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
             for e in validator.iter_errors(doc)]
    return found + _list_map_errors(schema, doc, "")


def test_the_validator_rejects_what_the_api_server_would(mpijob_schema):
    bad = _manifest()
    bad["spec"]["slotsPerWorker"] = "one"                       # wrong type
    bad["spec"]["mpiImplementation"] = "OpenMPIv5"              # not in the enum
    bad["spec"]["launcherSlots"] = 1                            # no such field
    worker = bad["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    worker["ports"].append(copy.deepcopy(worker["ports"][0]))   # same port twice
    del worker["name"]                                          # required
    errors = "\n".join(_errors(mpijob_schema, bad))
    assert "slotsPerWorker: 'one' is not of type 'integer'" in errors
    assert "mpiImplementation: 'OpenMPIv5' is not one of" in errors
    assert "'launcherSlots' was unexpected" in errors
    assert "'name' is a required property" in errors
    assert "duplicate ['containerPort', 'protocol']" in errors


def test_manifest_matches_the_crd_schema(mpijob_schema):
    assert _errors(mpijob_schema, _manifest()) == []


# ---------------------------------------------------------------- the manifest and the image

def _containers(doc: dict, role: str) -> list[dict]:
    return doc["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["containers"]


def test_mpijob_shape():
    doc = _manifest()
    assert doc["apiVersion"] == "kubeflow.org/v2beta1" and doc["kind"] == "MPIJob"
    spec = doc["spec"]
    assert spec["mpiImplementation"] == "MPICH"
    assert spec["slotsPerWorker"] >= 1
    assert spec["runPolicy"]["cleanPodPolicy"] in ("Running", "All")
    replicas = spec["mpiReplicaSpecs"]
    assert set(replicas) == {"Launcher", "Worker"}
    assert replicas["Launcher"]["replicas"] == 1 and replicas["Worker"]["replicas"] >= 1
    images = {c["image"] for role in replicas for c in _containers(doc, role)}
    assert len(images) == 1, "launcher and workers run the same image"
    for role in replicas:
        pod = replicas[role]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000  # the image's user distnet
        assert len(pod["containers"]) == 1


def test_mpijob_speaks_the_entrypoints_language():
    doc = _manifest()
    entry = ENTRY.read_text()
    roles = set(re.findall(r"^    ([a-z-]+)\) shift; run_", entry, re.M))
    launcher, = _containers(doc, "Launcher")
    worker, = _containers(doc, "Worker")
    assert launcher["args"][0] == "mpijob-launcher" and worker["args"] == ["mpijob-worker"]
    assert {"mpijob-launcher", "mpijob-worker"} <= roles
    assert "command" not in launcher and "command" not in worker  # the image's ENTRYPOINT runs
    # the operator mounts its keys where the entry point looks for them
    default = re.search(r"^MPIJOB_SSH=\$\{DISTNET_MPIJOB_SSH:-([^}]+)\}$", entry, re.M).group(1)
    assert doc["spec"]["sshAuthMountPath"] == default
    port = int(re.search(r"^SSH_PORT=\$\{DISTNET_SSH_PORT:-(\d+)\}$", entry, re.M).group(1))
    assert worker["readinessProbe"]["tcpSocket"]["port"] == port
    assert [p["containerPort"] for p in worker["ports"]] == [port]
    # the job file is in the image (COPY examples/), the run under /runs on a volume
    assert (REPO / launcher["args"][1]).is_file()
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert {"/runs", "/dev/shm"} <= mounts


def test_mpijob_threads_and_stop_match_compose():
    doc = _manifest()
    compose = yaml.safe_load(COMPOSE.read_text())
    launcher_env = compose["services"]["launcher"]["environment"]
    for role in ("Launcher", "Worker"):
        env = {e["name"]: e.get("value") for e in _containers(doc, role)[0]["env"]}
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            assert env[name] == "1", name  # every pool sized, none from the node's cores
        assert env["MPIR_CVAR_CH4_CMA_ENABLE"] == launcher_env["MPIR_CVAR_CH4_CMA_ENABLE"] == "0"
        pod = doc["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]
        grace = compose["services"]["launcher"]["stop_grace_period"]
        assert f"{pod['terminationGracePeriodSeconds']}s" in grace
