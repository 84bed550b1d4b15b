"""docker/ and launch/ scripts, run as plain scripts (Docker itself cannot run here).

Covers: bash syntax of every script; make-hostfile from names and addresses;
the entry point's key generation (0600 in a 0700 directory on the shared
volume, one pair however many containers start at once), its sshd
configuration (keys only, no root), its worker discovery and known_hosts,
its refusal to run a role as root; the static promises of the Dockerfile and
compose file; and the launch/ wrappers' commands.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from distnet.runner.launcher import Host, parse_hostfile

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
LAUNCH = REPO / "launch"
ENTRY = DOCKER / "entrypoint.sh"
MAKE_HOSTFILE = DOCKER / "make-hostfile.sh"
SCRIPTS = sorted(DOCKER.glob("*.sh")) + sorted(LAUNCH.glob("*.sh")) + [LAUNCH / "slurm.sbatch"]


def _run(cmd, env=None, input=None, timeout=60) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([str(c) for c in cmd], env=full, input=input, capture_output=True,
                          text=True, timeout=timeout)


def _needs_ssh_keygen():
    # The entrypoint generates the cluster keys with the system's ssh-keygen; no
    # Python stand-in tests the real thing.  .ci/run installs openssh-client, so
    # this runs in CI; elsewhere the reason is printed.
    if shutil.which("ssh-keygen") is None:
        print("\nskipped: ssh-keygen (openssh-client) is not installed")
        pytest.skip("ssh-keygen (openssh-client) is not installed")


# ---------------------------------------------------------------- syntax, help

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    r = _run(["bash", "-n", script])
    assert r.returncode == 0, r.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(script, os.X_OK) or script.suffix == ".sbatch"


def test_the_shared_test_functions_parse():
    r = _run(["bash", "-n", LAUNCH / "test-lib.bash"])   # sourced by the two system tests
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help(script):
    r = _run(["bash", script, "--help"])
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and "set -euo" not in r.stdout
    assert len(r.stdout.splitlines()) > 5


# ---------------------------------------------------------------- make-hostfile

def test_make_hostfile_sorts_dedups_and_parses(tmp_path):
    r = _run([MAKE_HOSTFILE, "10.5.0.10", "10.5.0.3", "worker-b", "10.5.0.3", "worker-a"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "10.5.0.3:1\n10.5.0.10:1\nworker-a:1\nworker-b:1\n"
    out = tmp_path / "hosts"
    r = _run([MAKE_HOSTFILE, "--slots", "4", "--output", out], input="10.5.0.2\n10.5.0.1 \n")
    assert r.returncode == 0 and r.stdout == ""
    assert parse_hostfile(out) == [Host("10.5.0.1", 4), Host("10.5.0.2", 4)]


@pytest.mark.parametrize("args, words", [
    (["a;b"], "'a;b' is not a host name"),
    (["ok", "-bad"], "unknown option '-bad'"),
    (["--", "x y"], "'x y' is not a host name"),
    (["--slots", "0", "h"], "--slots expects an integer >= 1, got '0'"),
    (["--slots", "two", "h"], "got 'two'"),
    ([], "no host given"),
])
def test_make_hostfile_refuses(args, words):
    r = _run([MAKE_HOSTFILE, *args], input="")
    assert r.returncode == 2 and words in r.stderr and r.stdout == ""


# ---------------------------------------------------------------- entrypoint: keys, sshd

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cluster_keys_on_the_volume_with_private_permissions(tmp_path):
    _needs_ssh_keygen()
    volume = tmp_path / "cluster"
    env = {"DISTNET_CLUSTER_DIR": str(volume)}
    r = _run([ENTRY, "keys"], env)
    assert r.returncode == 0, r.stderr
    key = volume / "ssh" / "id_ed25519"
    assert r.stdout.strip() == str(key)
    assert _mode(key.parent) == 0o700 and _mode(key) == 0o600
    assert _mode(key.with_suffix(".pub")) == 0o644
    public = _run(["ssh-keygen", "-y", "-f", key]).stdout.split()[:2]
    assert key.with_suffix(".pub").read_text().split()[:2] == public
    # a second container keeps the pair
    before = key.read_bytes()
    assert _run([ENTRY, "keys"], env).returncode == 0
    assert key.read_bytes() == before


def test_containers_starting_together_share_one_key_pair(tmp_path):
    _needs_ssh_keygen()
    env = dict(os.environ, DISTNET_CLUSTER_DIR=str(tmp_path / "cluster"))
    procs = [subprocess.Popen([str(ENTRY), "keys"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(5)]
    results = [p.communicate(timeout=60) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    key = tmp_path / "cluster" / "ssh" / "id_ed25519"
    derived = _run(["ssh-keygen", "-y", "-f", key]).stdout.split()[:2]
    assert key.with_suffix(".pub").read_text().split()[:2] == derived
    assert sorted(p.name for p in key.parent.iterdir()) == ["id_ed25519", "id_ed25519.pub"]


def test_sshd_config_keys_only_no_root(tmp_path):
    _needs_ssh_keygen()
    d = tmp_path / "sshd"
    r = _run([ENTRY, "sshd-config", d], {"DISTNET_SSH_PORT": "2299"})
    assert r.returncode == 0, r.stderr
    config = (d / "sshd_config").read_text()
    settings = {}
    for line in config.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(None, 1)
            assert key not in settings, f"{key} set twice"
            settings[key] = value
    assert settings["PasswordAuthentication"] == "no"
    assert settings["KbdInteractiveAuthentication"] == "no"
    assert settings["PermitRootLogin"] == "no"
    assert settings["PermitEmptyPasswords"] == "no"
    assert settings["PubkeyAuthentication"] == "yes"
    assert settings["Port"] == "2299"
    assert settings["AllowUsers"] == _run(["id", "-un"]).stdout.strip()
    assert settings["HostKey"] == str(d / "ssh_host_ed25519_key")
    assert _mode(d / "ssh_host_ed25519_key") == 0o600


def test_sshd_accepts_the_config(tmp_path):
    _needs_ssh_keygen()
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    # `sshd -t/-T` is the only authority on what the written config means.
    # .ci/run installs openssh-server and makes /run/sshd (its service would), so this runs in CI.
    if sshd is None or not Path("/run/sshd").is_dir():
        # Skip only without openssh-server (a developer's machine); CI installs it.
        reason = "openssh-server (sshd and /run/sshd, as in the image) is not installed"
        print(f"\nskipped: {reason}")
        pytest.skip(reason)
    r = _run([ENTRY, "sshd-config", tmp_path])
    assert r.returncode == 0, r.stderr
    t = _run([sshd, "-t", "-f", tmp_path / "sshd_config"])
    assert t.returncode == 0, t.stderr
    # and sshd reads the same settings back: no password, no root
    t = _run([sshd, "-T", "-f", tmp_path / "sshd_config", "-C", "user=distnet,host=h,addr=10.0.0.1"])
    effective = dict(line.split(None, 1) for line in t.stdout.splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"


# The refusal can only be observed as root (CI runs as root); as another user
# the entrypoint has nothing to refuse.
@pytest.mark.skipif(os.geteuid() != 0, reason="checks the refusal to run as root")
@pytest.mark.parametrize("role", ["worker", "launcher"])
def test_roles_refuse_root(tmp_path, role):
    r = _run([ENTRY, role], {"DISTNET_CLUSTER_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert "runs as the non-root user" in r.stderr
    assert not (tmp_path / "ssh").exists()  # refused before touching anything


# ---------------------------------------------------------------- entrypoint: discovery

def _fake_getent(tmp_path: Path, addresses: list[str]) -> dict:
    """A getent that answers `ahostsv4 worker` like Docker's DNS (one line per address, 3 kinds)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    lines = "".join(f"echo '{a}      {kind} worker'\n" for a in addresses
                    for kind in ("STREAM", "DGRAM", "RAW"))
    script = bin_dir / "getent"
    script.write_text(f"#!/bin/sh\n[ \"$1 $2\" = 'ahostsv4 worker' ] || exit 2\n{lines}")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_hostfile_from_the_service_addresses(tmp_path):
    env = _fake_getent(tmp_path, ["172.30.0.4", "172.30.0.3", "172.30.0.12"])
    env.update(DISTNET_WORKERS="3", DISTNET_SETTLE="0", DISTNET_SLOTS="2")
    r = _run([ENTRY, "hostfile"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "172.30.0.3:2\n172.30.0.4:2\n172.30.0.12:2\n"


def test_hostfile_gives_up_when_workers_are_missing(tmp_path):
    env = _fake_getent(tmp_path, ["172.30.0.3", "172.30.0.4"])
    env.update(DISTNET_WORKERS="3", DISTNET_SETTLE="0", DISTNET_WAIT_TIMEOUT="1")
    r = _run([ENTRY, "hostfile"], env)
    assert r.returncode == 1 and r.stdout == ""
    assert "found 2 worker(s) of service 'worker' after 1 s, expected at least 3" in r.stderr


def test_hostfile_rejects_bad_settings(tmp_path):
    env = _fake_getent(tmp_path, ["172.30.0.3"])
    env.update(DISTNET_WORKERS="two")
    r = _run([ENTRY, "hostfile"], env)
    assert r.returncode == 1 and "DISTNET_WORKERS expects a non-negative integer, got 'two'" in r.stderr


def test_known_hosts_from_published_host_keys(tmp_path):
    volume = tmp_path / "cluster"
    (volume / "hostkeys").mkdir(parents=True)
    (volume / "hostkeys" / "172.30.0.3.pub").write_text("ssh-ed25519 AAAAkey3 distnet-host\n")
    (volume / "hostkeys" / "172.30.0.9.pub").write_text("ssh-ed25519 AAAAkey9 distnet-host\n")
    hostfile = tmp_path / "hosts"
    hostfile.write_text("172.30.0.3:1\n172.30.0.4:1\n")  # .4 has not published yet
    out = tmp_path / "known_hosts"
    r = _run([ENTRY, "known-hosts", hostfile, out], {"DISTNET_CLUSTER_DIR": str(volume)})
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "[172.30.0.3]:2222 ssh-ed25519 AAAAkey3\n"


def test_an_earlier_run_needs_resume(tmp_path):
    run = tmp_path / "runs" / "mlp"
    fresh = _run([ENTRY, "check-run-dir", "job.toml", "--run-dir", run])
    assert fresh.returncode == 0, fresh.stderr  # nothing there yet
    (run / "checkpoints").mkdir(parents=True)
    assert _run([ENTRY, "check-run-dir", "--run-dir", run]).returncode == 0  # empty: nothing to lose
    (run / "checkpoints" / "ckpt-00000020.h5").write_bytes(b"x")
    for args in (["--run-dir", run], [f"--run-dir={run}", "--progress", "plain"],
                 ["--run-dir", tmp_path / "other", "--run-dir", run]):  # the last one counts
        r = _run([ENTRY, "check-run-dir", *args])
        assert r.returncode == 1 and r.stdout == "", args
        assert f"run directory {run} holds an earlier run" in r.stderr
        assert "DISTNET_EXTRA_ARGS=--resume" in r.stderr and len(r.stderr.splitlines()) == 1
        assert _run([ENTRY, "check-run-dir", *args, "--resume"]).returncode == 0
    (run / "checkpoints" / "ckpt-00000020.h5").unlink()
    (run / "metrics.jsonl").write_text("{}\n")
    assert _run([ENTRY, "check-run-dir", "--run-dir", run]).returncode == 1
    assert _run([ENTRY, "check-run-dir", "--run-dir", tmp_path / "new"]).returncode == 0


def test_other_commands_run_as_given():
    r = _run([ENTRY, sys.executable, "-c", "print('ran')"])
    assert r.returncode == 0 and r.stdout == "ran\n"


# ---------------------------------------------------------------- Dockerfile, compose

def _instructions(dockerfile: Path) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_promises():
    steps = _instructions(DOCKER / "Dockerfile")
    assert steps[0] == "FROM python:3.11-slim"
    users = [s for s in steps if s.startswith("USER ")]
    assert users == ["USER distnet"] and steps.index(users[0]) > max(
        i for i, s in enumerate(steps) if s.startswith("RUN "))  # nothing runs as root after
    copies = [s for s in steps if s.startswith(("COPY", "ADD"))]
    assert not [s for s in copies if re.search(r"\s\.\s", s + " ")], "never the whole context"
    assert not any("ssh-keygen" in s or "id_" in s or "ssh_host_" in s and "rm -f" not in s
                   for s in steps), "no key generated or copied at build time"
    assert any("rm -f /etc/ssh/ssh_host_*" in s for s in steps)
    assert any("pip install" in s and "openssh-server" not in s for s in steps)
    assert any("openssh-server" in s for s in steps)
    assert steps[-2:] == ['ENTRYPOINT ["entrypoint.sh"]', 'CMD ["worker"]']
    # COPY --chmod needs BuildKit's newer Dockerfile syntax; git keeps the run bit
    assert not [s for s in copies if "--chmod" in s]
    # the CA bundle comes in as a build secret for pip's step only, never COPY'd
    pip = next(s for s in steps if "pip install" in s)
    assert pip.startswith("RUN --mount=type=secret,id=ca_bundle ") and "PIP_CERT=/run/secrets/ca_bundle" in pip
    assert not [s for s in copies if "cert" in s.lower() or "ca_bundle" in s]


def test_dockerignore_sends_only_what_the_image_copies():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything out, then back in by name
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for step in _instructions(DOCKER / "Dockerfile"):
        if step.startswith("COPY"):
            copied.update(a.rstrip("/") for a in step.split()[1:-1] if not a.startswith("--"))
    assert copied == allowed
    assert all((REPO / name).exists() for name in allowed)


def test_nothing_runs_as_root_anywhere():
    for path in list(DOCKER.iterdir()) + list(LAUNCH.iterdir()):
        if path.suffix == ".md":
            continue
        text = path.read_text()
        assert "allow-run-as-root" not in text and "--allow-run" not in text, path


def test_compose_text():
    text = (DOCKER / "compose.yaml").read_text()
    assert re.search(r"^networks:\n  mpi:\n    internal: true$", text, re.M)
    assert "ports:" not in text and "network_mode" not in text and "privileged" not in text
    assert "replicas: ${DISTNET_WORKERS:-2}" in text
    assert re.search(r"^  worker:$", text, re.M) and re.search(r"^  launcher:$", text, re.M)


def test_compose_structure():
    text = (DOCKER / "compose.yaml").read_text()
    # PyYAML is in the test extra, so this runs in CI; the textual checks above run regardless.
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: structural check skipped")
    doc = yaml.safe_load(text)
    assert doc["networks"] == {"mpi": {"internal": True}}
    services = doc["services"]
    assert set(services) == {"launcher", "worker"}
    for svc in services.values():
        assert svc["networks"] == ["mpi"]
        assert svc["image"] == "distnet:latest"
        assert "cluster:/cluster" in svc["volumes"] and "runs:/runs" in svc["volumes"]
        assert "ports" not in svc  # nothing published on the Docker host
        assert svc["shm_size"] == "${DISTNET_SHM_SIZE:-1gb}"  # room for the shared weights (64 MB default)
        env = svc["environment"]
        # every thread pool of a rank from DISTNET_THREADS, none from the launcher's cores
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            assert env[name] == "${DISTNET_THREADS:-1}", name
        assert env["MPIR_CVAR_CH4_CMA_ENABLE"] == "0"  # seccomp refuses process_vm_readv
        assert env["UCX_TLS"] == "${UCX_TLS:-tcp,self}"
    # built once, by one service: two `build:` sections build the image twice
    assert [name for name, svc in services.items() if "build" in svc] == ["worker"]
    build = services["worker"]["build"]
    assert build["dockerfile"] == "docker/Dockerfile" and build["secrets"] == ["ca_bundle"]
    assert doc["secrets"]["ca_bundle"]["file"] == "${DISTNET_CA_BUNDLE:-/dev/null}"
    assert services["launcher"]["pull_policy"] == "never"
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == "${DISTNET_WORKERS:-2}"
    launcher = services["launcher"]
    assert launcher["command"][0] == "launcher"
    assert launcher["environment"]["DISTNET_WORKERS"] == "${DISTNET_WORKERS:-2}"
    # `docker compose stop`: the signal every scheduler sends, and time to save
    assert launcher["stop_signal"] == "SIGTERM"
    assert launcher["stop_grace_period"] == "${DISTNET_STOP_GRACE:-60s}"


# ---------------------------------------------------------------- launch/ wrappers

def test_local_wrapper_runs_distnet_train_with_n(tmp_path):
    r = _run([LAUNCH / "local.sh", "-n", "3", "job.toml", "--set", "a=1", "--resume"],
             {"DISTNET": "echo"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "train job.toml --set a=1 --resume -n 3\n"
    r = _run([LAUNCH / "local.sh", "--dry-run", "-n", "2"], {"DISTNET": "distnet"})
    assert r.stdout == "distnet train -n 2 \n"
    for bad in (["-n", "0"], ["-n", "x"], ["--hostfile", "h"]):
        r = _run([LAUNCH / "local.sh", *bad], {"DISTNET": "echo"})
        assert r.returncode == 2 and r.stdout == "", bad


def test_hostfile_wrapper(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("n1:2\n")
    r = _run([LAUNCH / "hostfile.sh", hosts, "job.toml", "-n", "2", "--progress", "plain"],
             {"DISTNET": "echo"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"train job.toml --progress plain --hostfile {hosts} -n 2\n"
    r = _run([LAUNCH / "hostfile.sh", tmp_path / "nope", "job.toml"], {"DISTNET": "echo"})
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_slurm_wrapper_hostfile_from_the_allocation(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames node[1-2]' ] || exit 9\necho node1\necho node2\n")
    (bin_dir / "scontrol").chmod(0o755)
    (bin_dir / "distnet").write_text("#!/bin/sh\necho \"$HYDRA_LAUNCHER $*\"\n")
    (bin_dir / "distnet").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HYDRA_"))}
    env.update({"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[1-2]",
                "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_ID": "77", "TMPDIR": str(tmp_path),
                "DISTNET": str(bin_dir / "distnet")})
    r = subprocess.run(["bash", str(LAUNCH / "slurm.sbatch"), "job.toml", "--resume"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    hostfile = tmp_path / "distnet-hosts.77"
    assert r.stdout == f"slurm train job.toml --resume --hostfile {hostfile}\n"
    assert parse_hostfile(hostfile) == [Host("node1", 4), Host("node2", 4)]
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run(["bash", str(LAUNCH / "slurm.sbatch")], env=outside, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "not inside a SLURM allocation" in r.stderr


def test_the_cluster_test_counts_ranks_by_the_launchers_worker_entry():
    """docker/test-cluster.sh recognises a rank in `docker top` by the start of
    distnet.runner.launcher.WORKER_ENTRY (docker top cuts long command lines)."""
    from pathlib import Path

    from distnet.runner.launcher import WORKER_ENTRY

    script = (Path(__file__).resolve().parent.parent / "docker" / "test-cluster.sh").read_text()
    start = WORKER_ENTRY[1].split("\n")[0]          # "import signal, sys"
    assert WORKER_ENTRY[0] == "-c" and f"/ -c {start}/" in script
