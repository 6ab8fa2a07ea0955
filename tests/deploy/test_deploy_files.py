"""The files in deploy/ are checked against the real CLI, settings loader and policy loader (deploy/README.md).

What cannot run here (Docker, Kubernetes, SGX) is checked as far as this machine allows: every ``ehsm-kms``
command line in them parses with the real click commands, every setting and option exists, every policy loads,
the units pass ``systemd-analyze verify``, the kustomization builds, and the Gramine template renders to TOML.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import jinja2
import pytest
import yaml

from ehsm_kms import config
from ehsm_kms.cli.main import main as cli
from ehsm_kms.provisioning.attest import load_policy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ENV_FILES = sorted((DEPLOY / "config").glob("*.env"))
SETTINGS_FILES = sorted((DEPLOY / "config").glob("kms-*.toml"))
POLICIES = [DEPLOY / "config" / "nodes-tpm2.example.toml", DEPLOY / "config" / "dev-none.toml"]


# ------------------------------------------------------------------------------------------- command lines
def parse_command(argv: list[str], environ: Mapping[str, str] | None = None) -> click.Context:
    """Parse an ``ehsm-kms`` command line with the real commands, without running it.

    Paths that must exist on the deployed machine (certificates, policies) do not exist here: a "does not exist"
    complaint about a path is accepted, anything else (an unknown option, a bad choice or number) fails.
    """
    args = list(argv)
    ctx = cli.make_context("ehsm-kms", args, resilient_parsing=True)
    command: click.Command = cli
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args (9.0 folds it into args)
            warnings.simplefilter("ignore", DeprecationWarning)
            rest = [*getattr(ctx, "protected_args", []), *ctx.args]
        if not rest:
            break
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"unknown command {name!r} in {argv}"
        try:
            ctx = sub.make_context(name or sub.name or "?", list(rest), parent=ctx)
        except click.BadParameter as exc:
            if "does not exist" not in exc.format_message():
                raise
            return ctx
        command = sub
    return ctx


def _ehsm_argv(words: list[str]) -> list[str] | None:
    for i, word in enumerate(words):
        if word.endswith("/ehsm-kms") or word == "ehsm-kms":
            return words[i + 1 :]
    return None


def test_parse_command_rejects_what_the_cli_rejects() -> None:
    with pytest.raises(click.UsageError):
        parse_command(["serve", "--no-such-option"])
    with pytest.raises(click.BadParameter):
        parse_command(["dkeyserver", "--role", "emperor"])
    with pytest.raises(click.BadParameter):
        parse_command(["dkeycache", "--socket-mode", "0777"])
    parse_command(["dkeycache", "--server-ca", "/nonexistent/ca.pem"])  # a deployment path: accepted


# ----------------------------------------------------------------------------------------------- systemd
def _unit_exec(unit: Path) -> list[list[str]]:
    lines = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    out = []
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["/bin/sh", "-c"]:
            words = shlex.split(re.sub(r'"\$\(id -u [a-z-]+\)"', "10001", words[2]))
        argv = _ehsm_argv(words)
        assert argv is not None, f"{unit.name}: ExecStart runs no ehsm-kms: {line}"
        out.append(argv)
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_units_verify_and_their_commands_parse(unit: Path, tmp_path: Path) -> None:
    for argv in _unit_exec(unit):
        parse_command(argv)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine (the command lines were checked)")
    installed = Path(sys.executable).with_name("ehsm-kms")
    assert installed.exists(), "the package's console script should be installed beside the interpreter"
    name = unit.name.replace("@.service", "@root.service")
    copy = tmp_path / name
    copy.write_text(unit.read_text().replace("/opt/ehsm-kms/venv/bin/ehsm-kms", str(installed)))
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


# ------------------------------------------------------------------------------------------ settings files
@pytest.mark.parametrize("path", SETTINGS_FILES, ids=lambda p: p.name)
def test_node_settings_files_load(path: Path) -> None:
    settings = config.load(config_file=str(path), environ={})
    assert settings.run_mode in path.name


def _env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def _envvars(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_files_name_real_options_with_valid_values(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = _env_file(path)
    command_name = "dkeycache" if path.name.startswith("dkeycache") else "dkeyserver"
    command = cli.commands[command_name]  # type: ignore[attr-defined]
    unknown = set(pairs) - _envvars(command)
    assert not unknown, f"{path.name}: not options of ehsm-kms {command_name}: {sorted(unknown)}"
    for key, value in pairs.items():
        monkeypatch.setenv(key, value)
    ctx = parse_command([command_name])
    if path.name.startswith("dkeyserver-"):
        assert ctx.params["role"] == path.stem.split("-")[1]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policies_load(path: Path) -> None:
    assert load_policy(path).kind in path.read_text()


# ------------------------------------------------------------------------------------------------ compose
def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    return doc


def test_compose_services_reference_each_other_and_their_commands_parse() -> None:
    services: dict[str, Any] = _compose()["services"]
    assert {"postgres", "dkeyserver-root", "dkeyserver-worker", "dkeycache", "kms1", "kms2"} <= set(services)
    parsed = 0
    for name, service in services.items():
        for dep in service.get("depends_on", []) or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
        if service.get("image") == "ehsm-kms:dev" and "entrypoint" not in service:
            parse_command(list(service["command"]))
            parsed += 1
    assert parsed == 5
    # The development cluster is unattested, and says so on both sides.
    assert "--allow-unattested" in services["dkeyserver-root"]["command"]
    assert "--evidence=none" in services["dkeycache"]["command"]
    dockerfile = (DEPLOY / "compose" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ehsm-kms"]' in dockerfile


# --------------------------------------------------------------------------------------------- kubernetes
def _k8s_docs() -> Iterator[dict[str, Any]]:
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def test_kubernetes_manifests_have_the_asked_shapes_and_parse() -> None:
    docs = list(_k8s_docs())
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("StatefulSet", "dkeyserver-root"),
        ("Deployment", "dkeyserver-worker"),
        ("DaemonSet", "dkeycache"),
        ("Deployment", "kms"),
    } <= kinds
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                parse_command(list(container["args"]))
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "ehsm-kms-node":
            node = tomllib.loads(doc["data"]["kms.toml"])
            assert config.load(overrides=node, environ={}).run_mode == "cluster"
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "ehsm-kms-policies":
            for text in doc["data"].values():
                assert load_policy(text).kind == "tpm2"
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())["resources"]
    present = [p.name for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(present)


def test_kustomization_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine (the manifests were parsed and checked above)")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert all(d["metadata"].get("namespace") == "ehsm-kms" for d in built if d["kind"] != "Namespace")


# -------------------------------------------------------------------------------------------------- gramine
class _GramineStandIn:
    """What ``gramine-manifest`` gives templates (``gramine.runtimedir()``): a stand-in, Gramine is not here."""

    @staticmethod
    def runtimedir() -> str:
        return "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc"


def test_gramine_template_renders_to_a_manifest_of_known_settings() -> None:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # TOML, not HTML
    template = env.from_string((DEPLOY / "gramine" / "ehsm-kms.manifest.template").read_text())
    text = template.render(
        entrypoint="/usr/bin/python3.11",
        log_level="error",
        arch_libdir="/lib/x86_64-linux-gnu",
        venv="/opt/ehsm-kms/venv",
        gramine=_GramineStandIn(),
        python={"stdlib": "/usr/lib/python3.11"},
        env={},
    )
    manifest = tomllib.loads(text)
    assert manifest["sgx"]["remote_attestation"] == "dcap"
    assert manifest["sgx"]["debug"] is False
    known = {f.upper() for f in config.Settings.__dataclass_fields__}
    env_settings = {k: v for k, v in manifest["loader"]["env"].items() if k.startswith(config.ENV_PREFIX)}
    for key in env_settings:
        assert key.removeprefix(config.ENV_PREFIX) in known, f"unknown setting {key}"
    plain = {k.removeprefix(config.ENV_PREFIX).lower(): v for k, v in env_settings.items() if isinstance(v, str)}
    settings = config.load(overrides=plain, environ={})
    assert (settings.core_mode, settings.attestation_provider) == ("inprocess", "sgx-dcap")
    argv = manifest["loader"]["argv"]
    assert argv[1:4] == ["-m", "ehsm_kms.cli.main", "serve"]
    parse_command(argv[3:])
    mounts = {m["path"]: m for m in manifest["fs"]["mounts"]}
    assert mounts[settings.data_dir]["type"] == "encrypted"
    assert mounts[settings.data_dir]["key_name"] == "_sgx_mrenclave"
