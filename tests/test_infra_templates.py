"""The cloud templates name only what exists, expose nothing publicly, and pass the linters.

Neither cloud can be reached here, so the templates are read as data: the Terraform files
with python-hcl2, the SAM template with a YAML loader that keeps CloudFormation's tags,
the Dockerfiles line by line. Each name a template uses is checked against the real code
(entry points parsed from the adapters, environment variable names from
``segmentation.config``, package folders from ``infra/package.py``), and the retrain
schedules' messages are fed to the real trigger parsers. terraform fmt, cfn-lint, checkov
and hadolint run as the user would run them.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

from training.retrain.trigger import from_eventbridge, from_pubsub

ROOT = Path(__file__).resolve().parents[1]
GCP, AWS = ROOT / "infra" / "gcp", ROOT / "infra" / "aws"
SAM = AWS / "template.yaml"
DOCKERFILES = (ROOT / "Dockerfile", AWS / "retrain.Dockerfile")
BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
sys.path.insert(0, str(ROOT / "infra"))
import package  # noqa: E402


def _run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs
    )


def _output(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


# --- Terraform, read with python-hcl2 ---------------------------------------------------

_HCL = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


def _terraform() -> dict:
    """Every block of infra/gcp/*.tf: resources and data by (type, name), locals, variables."""
    out: dict = {"resource": {}, "data": {}, "locals": {}, "variable": {}}
    for path in sorted(GCP.glob("*.tf")):
        with path.open() as fh:
            doc = hcl2.load(fh, serialization_options=_HCL)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for type_, named in block.items():
                    out[kind].update({(type_, name): body for name, body in named.items()})
        for block in doc.get("locals", []):
            out["locals"].update(block)
        for block in doc.get("variable", []):
            out["variable"].update(block)
    return out


TF = _terraform()


def _of_type(type_: str) -> dict[str, dict]:
    return {name: body for (t, name), body in TF["resource"].items() if t == type_}


def _local(value):
    """``"${local.x}"`` -> the local's value; anything else unchanged."""
    ref = re.fullmatch(r"\$\{local\.(\w+)\}", value) if isinstance(value, str) else None
    return TF["locals"][ref[1]] if ref else value


def _with_defaults(text: str) -> str:
    """``text`` with each ``${var.x}`` replaced by the variable's default."""
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: str(TF["variable"][m[1]]["default"]), text)


FUNCTIONS = _of_type("google_cloudfunctions2_function")


def _decorated(path: Path) -> dict[str, str]:
    """``{function name: decorator}`` for the functions_framework-decorated functions."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        for dec in getattr(node, "decorator_list", []):
            if isinstance(dec, ast.Attribute) and getattr(dec.value, "id", "") == (
                "functions_framework"
            ):
                found[node.name] = dec.attr
    return found


def test_terraform_files_are_formatted():
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH: install Terraform >= 1.5 to check infra/gcp")
    done = _run(["terraform", "fmt", "-check", "-recursive", "-diff", GCP])
    assert done.returncode == 0, _output(done)


def test_every_gcp_function_runs_a_decorated_entry_point_of_main_py_on_python312():
    decorated = _decorated(ROOT / "functions" / "main.py")
    entry_points = set()
    for name, fn in FUNCTIONS.items():
        build = fn["build_config"][0]
        entry_points.add(build["entry_point"])
        assert _local(build["runtime"]) == "python312", name
        # An event trigger delivers CloudEvents; everything else is an HTTP function.
        expected = "cloud_event" if "event_trigger" in fn else "http"
        assert decorated.get(build["entry_point"]) == expected, name
    assert entry_points == set(package.FUNCTIONS)


_ENV_READERS = {"env_value", "_env", "os.getenv", "os.environ.get", "os.environ"}


def _names_the_code_reads() -> set[str]:
    """Every environment variable name read in src/ and functions/: the first argument of
    ``env_value(...)`` / ``_env(...)`` in the settings, and any ``os.environ``/``getenv``."""
    names = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call | ast.Subscript):
                continue
            target = node.func if isinstance(node, ast.Call) else node.value
            first = (node.args if isinstance(node, ast.Call) else [node.slice])[:1]
            if (
                ast.unparse(target) in _ENV_READERS
                and first
                and isinstance(first[0], ast.Constant)
                and isinstance(first[0].value, str)
            ):
                names.add(first[0].value)
    assert "SEGMENTATION_MODEL_STORE" in names and "SEGMENTATION_RETRAIN_LEASE_SECONDS" in names
    return names


def test_every_environment_variable_the_gcp_functions_set_is_one_the_code_reads():
    known = _names_the_code_reads()
    for name, fn in FUNCTIONS.items():
        env = _local(fn["service_config"][0]["environment_variables"])
        assert set(env) <= known, f"{name}: {sorted(set(env) - known)}"
        assert _local(env["SEGMENTATION_MODEL_STORE"]).startswith("gs://"), name


def test_every_gcp_source_is_a_folder_package_py_writes():
    dirs = TF["locals"]["package_dirs"]
    resolved = {f: Path(d.replace("${path.module}", str(GCP))).resolve() for f, d in dirs.items()}
    assert resolved == {f: package.default_out("gcp", f) for f in package.FUNCTIONS}
    archive = TF["data"][("archive_file", "source")]
    assert (archive["for_each"], archive["source_dir"]) == (
        "${local.package_dirs}",
        "${each.value}",
    )
    assert _of_type("google_storage_bucket_object")["source"]["for_each"] == "${local.package_dirs}"
    for fn in FUNCTIONS.values():
        source = fn["build_config"][0]["source"][0]["storage_source"][0]
        entry_point = fn["build_config"][0]["entry_point"]
        assert source["object"] == f'${{google_storage_bucket_object.source["{entry_point}"].name}}'


def _members(body: dict) -> list[str]:
    return [body["member"]] if "member" in body else list(body.get("members", []))


def test_no_gcp_grant_names_all_users_and_none_is_project_wide():
    iam = {
        k: v for k, v in TF["resource"].items() if re.search(r"_iam_(member|binding|policy)$", k[0])
    }
    assert iam
    for (type_, name), body in iam.items():
        assert not type_.startswith("google_project_iam"), f"{name}: grant on a resource instead"
        assert not PUBLIC & set(_members(body)), name
        assert "policy_data" not in body, f"{name}: an inline policy can hide a public member"
    assert not PUBLIC & set(TF["variable"]["invokers"]["default"])


def test_each_gcp_function_is_invokable_only_by_var_invokers_or_its_trigger():
    invokers = {
        **_of_type("google_cloud_run_service_iam_member"),
        **_of_type("google_cloudfunctions2_function_iam_member"),
    }
    for name, fn in FUNCTIONS.items():
        bindings = [
            b for b in invokers.values() if f"google_cloudfunctions2_function.{name}." in str(b)
        ]
        assert [b["role"] for b in bindings] == ["roles/run.invoker"], name
        if "event_trigger" in fn:  # only Eventarc's identity may push events to it
            trigger_sa = fn["event_trigger"][0]["service_account_email"]
            assert bindings[0]["member"] == trigger_sa.replace(".email}", ".member}"), name
            assert fn["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        else:
            assert (bindings[0]["for_each"], bindings[0]["member"]) == (
                "${toset(var.invokers)}",
                "${each.value}",
            ), name
    # A *_iam_binding would own the role's whole member list; members add to it.
    assert not _of_type("google_cloud_run_service_iam_binding")


def test_every_gcp_bucket_is_versioned_uniform_and_public_access_prevented():
    buckets = _of_type("google_storage_bucket")
    assert "models" in buckets
    for name, bucket in buckets.items():
        assert bucket["versioning"][0]["enabled"] is True, name
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name


def test_serving_may_only_read_the_model_store_prefix():
    serving = "${google_service_account.serving.member}"
    grants = [
        g for g in _of_type("google_storage_bucket_iam_member").values() if g["member"] == serving
    ]
    assert [g["role"] for g in grants] == ["roles/storage.objectViewer"]
    condition = _local(grants[0]["condition"][0]["expression"])
    assert "${var.model_store_prefix}/" in condition


def test_the_scheduler_message_is_one_from_pubsub_accepts():
    fn = FUNCTIONS["retrain"]["event_trigger"][0]
    assert fn["retry_policy"] == "RETRY_POLICY_RETRY"
    assert fn["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    job = _of_type("google_cloud_scheduler_job")["retrain"]
    target = job["pubsub_target"][0]
    assert target["topic_name"] == fn["pubsub_topic"] == "${google_pubsub_topic.retrain.id}"
    assert target["data"] == "${base64encode(jsonencode({force = false}))}"
    schedule = _with_defaults(target["attributes"]["schedule"])
    message = {
        "attributes": {"schedule": schedule},
        "data": base64.b64encode(json.dumps({"force": False}).encode()).decode(),
        "publishTime": "2026-11-30T03:00:01.5Z",
    }
    trigger = from_pubsub({"message": message})
    assert (trigger.key, trigger.force) == (f"gcp:{schedule}:2026-11-30T03:00Z", False)


def test_every_gcp_variable_but_the_project_has_a_default():
    without = {name for name, v in TF["variable"].items() if "default" not in v}
    assert without == {"project"}
    assert TF["variable"]["region"]["default"] == "europe-west1"


# --- SAM, read with CloudFormation's tags kept ------------------------------------------


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads ``!Ref x`` as ``{"Ref": x}`` and ``!Sub``/``!GetAtt``... as ``{"Fn::...": x}``."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _tag)
TEMPLATE = yaml.load(SAM.read_text(), Loader=_CloudFormationLoader)
LAMBDAS = {
    name: res["Properties"]
    for name, res in TEMPLATE["Resources"].items()
    if res["Type"] == "AWS::Serverless::Function"
}


def _handler(props: dict) -> str:
    return props.get("Handler") or props["ImageConfig"]["Command"][0]


def _value(value):
    """A parameter reference resolved to the parameter's default."""
    if isinstance(value, dict) and "Ref" in value:
        return TEMPLATE["Parameters"][value["Ref"]]["Default"]
    return value


def test_sam_handlers_exist_in_the_lambda_adapter():
    tree = ast.parse((ROOT / "functions" / "aws_lambda.py").read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    handlers = {_handler(props) for props in LAMBDAS.values()}
    assert handlers == {f"aws_lambda.{f}" for f in package.FUNCTIONS}
    assert {h.split(".")[1] for h in handlers} <= defined


def _copied_folders(dockerfile: Path) -> set[Path]:
    lines = [line.split() for line in dockerfile.read_text().splitlines()]
    return {Path(w[1].rstrip("/")) for w in lines if w and w[0] == "COPY"}


def test_sam_functions_are_python312_built_from_the_packages_package_py_writes():
    for name, props in LAMBDAS.items():
        function = _handler(props).split(".")[1]
        out = package.default_out("aws", function)
        if props.get("PackageType") == "Image":
            meta = TEMPLATE["Resources"][name]["Metadata"]
            dockerfile = (AWS / meta["DockerContext"] / meta["Dockerfile"]).resolve()
            assert dockerfile.read_text().count("FROM public.ecr.aws/lambda/python:3.12\n") == 1
            folders = {
                (AWS / meta["DockerContext"] / p).resolve() for p in _copied_folders(dockerfile)
            }
            assert folders == {out, out / "requirements.txt"}, name
        else:
            assert props["Runtime"] == "python3.12", name
            assert (AWS / props["CodeUri"]).resolve() == out, name


def test_every_environment_variable_the_lambdas_set_is_one_the_code_reads():
    known = _names_the_code_reads()
    for name, props in LAMBDAS.items():
        env = props["Environment"]["Variables"]
        assert set(env) <= known, f"{name}: {sorted(set(env) - known)}"
        assert env["SEGMENTATION_MODEL_STORE"]["Fn::Sub"].startswith("s3://"), name


def test_predict_and_health_urls_need_iam_and_nothing_is_granted_to_everyone():
    with_url = {_handler(p) for p in LAMBDAS.values() if "FunctionUrlConfig" in p}
    assert with_url == {"aws_lambda.predict", "aws_lambda.health"}
    for props in LAMBDAS.values():
        if "FunctionUrlConfig" in props:
            assert props["FunctionUrlConfig"]["AuthType"] == "AWS_IAM"
    for name, res in TEMPLATE["Resources"].items():
        assert res["Type"] not in {"AWS::Lambda::Permission", "AWS::Lambda::Url"}, name


def test_retrain_runs_on_its_schedule_one_at_a_time_within_lambdas_limit():
    (retrain,) = [p for p in LAMBDAS.values() if _handler(p) == "aws_lambda.retrain"]
    assert retrain["ReservedConcurrentExecutions"] == 1
    assert 60 <= _value(retrain["Timeout"]) <= 900
    (event,) = retrain["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert _value(event["Properties"]["ScheduleExpression"]).startswith(("cron(", "rate("))


@pytest.mark.parametrize("execution_id", ["attempt-1", "attempt-2"])
def test_the_schedule_input_is_an_event_from_eventbridge_accepts(execution_id):
    (retrain,) = [p for p in LAMBDAS.values() if _handler(p) == "aws_lambda.retrain"]
    (event,) = retrain["Events"].values()
    sample = json.loads((ROOT / "functions" / "events" / "retrain_eventbridge.json").read_text())
    rendered = (
        event["Properties"]["Input"]
        .replace("<aws.scheduler.schedule-arn>", sample["schedule_arn"])
        .replace("<aws.scheduler.scheduled-time>", sample["scheduled_time"])
        .replace("<aws.scheduler.execution-id>", execution_id)
    )
    assert "<aws." not in rendered
    payload = json.loads(rendered)
    assert set(payload) == set(sample)
    trigger = from_eventbridge(payload)
    # Every attempt of one scheduled time is the same run.
    assert trigger.key == f"aws:{sample['schedule_arn']}:2026-11-30T02:00Z"


def test_the_model_bucket_is_versioned_encrypted_private_and_tls_only():
    bucket = TEMPLATE["Resources"]["ModelBucket"]["Properties"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    policy = TEMPLATE["Resources"]["ModelBucketPolicy"]["Properties"]["PolicyDocument"]
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert [s["Condition"]["Bool"]["aws:SecureTransport"] for s in deny] == ["false"]


def _allowed(role: str) -> set[str]:
    statements = [
        s
        for p in TEMPLATE["Resources"][role]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not [a for a in actions if "*" in a], role
    return {a for a in actions if a.startswith("s3:")}


def test_serving_reads_and_retrain_writes_the_store_and_nothing_deletes():
    assert _allowed("ServingRole") == {"s3:GetObject", "s3:ListBucket"}
    assert _allowed("RetrainRole") == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    roles = {_handler(p): p["Role"]["Fn::GetAtt"].split(".")[0] for p in LAMBDAS.values()}
    assert roles == {
        "aws_lambda.predict": "ServingRole",
        "aws_lambda.health": "ServingRole",
        "aws_lambda.retrain": "RetrainRole",
    }


def test_every_function_logs_to_its_own_group_kept_for_log_retention_days():
    groups = [p["LoggingConfig"]["LogGroup"]["Ref"] for p in LAMBDAS.values()]
    assert len(set(groups)) == len(LAMBDAS)
    for group in groups:
        retention = TEMPLATE["Resources"][group]["Properties"]["RetentionInDays"]
        assert retention == {"Ref": "LogRetentionDays"}
    assert TEMPLATE["Parameters"]["LogRetentionDays"]["Default"] == 30


# --- The predict container --------------------------------------------------------------


def test_the_container_runs_predict_as_a_non_root_user_with_a_health_check():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12-slim$", text, re.M)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M)[1])
    assert entry == ["functions-framework", "--target", "predict", "--source", "main.py"]
    assert _decorated(ROOT / "functions" / "main.py")["predict"] == "http"
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib\.request.*/health", text, re.M)
    assert _copied_folders(ROOT / "Dockerfile") == {
        package.default_out("gcp", "predict").relative_to(ROOT),
        package.default_out("gcp", "predict").relative_to(ROOT) / "requirements.txt",
    }


# --- The linters, as the user runs them -------------------------------------------------


def test_cfn_lint_passes_on_the_sam_template():
    done = _run([BIN / "cfn-lint", SAM])
    assert done.returncode == 0, _output(done)


def test_hadolint_passes_on_both_dockerfiles():
    done = _run([BIN / "hadolint", *DOCKERFILES])
    assert done.returncode == 0, _output(done)


@pytest.mark.parametrize(
    ("framework", "targets"),
    [
        ("terraform", ["-d", GCP]),
        ("cloudformation", ["-f", SAM]),
        ("dockerfile", [a for path in DOCKERFILES for a in ("-f", path)]),
    ],
)
def test_checkov_finds_no_failed_check_and_every_skip_says_why(framework, targets):
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} is missing: run `make test`, which installs checkov there")
    command = [CHECKOV, "--skip-download", "--framework", framework, "-o", "json", *targets]
    done = _run(command, cwd=ROOT)
    assert done.returncode == 0, _output(done)
    reports = json.loads(done.stdout)
    (report,) = reports if isinstance(reports, list) else [reports]
    summary = report["summary"]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.strip()) > 20, f"{skipped['check_id']} on {skipped['resource']}"
