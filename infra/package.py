"""Assemble the deployables: one folder per function, holding exactly what it needs.

``predict`` and ``health`` get the adapter (``main.py`` for Cloud Functions,
``aws_lambda.py`` for Lambda), ``openapi.yaml``, the ``segmentation`` core and a
``requirements.txt`` with onnxruntime, numpy, the framework (GCP) and the store client; no
scikit-learn, dbt or DuckDB can reach them. ``retrain`` adds the ``training`` package, the
dbt project and the training stack. Every direct requirement is pinned ``==`` from
``requirements/constraints.txt``; the platform's pip resolves the rest at build time.

    python infra/package.py gcp|aws predict|health|retrain|all [OUT] [--measure] [--install]

``--measure`` installs each package's requirements for Python 3.12 on Linux x86_64 into a
temporary folder, prints the installed size, and exits 1 when predict is over
``PREDICT_BUDGET_BYTES``. ``--install`` puts those wheels into OUT itself (a Lambda zip
that needs no ``sam build``). Sizes and contents: ``docs/packages.md``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("predict", "health", "retrain")
PLATFORMS = ("gcp", "aws")
ADAPTERS = {"gcp": "main.py", "aws": "aws_lambda.py"}
#: Cloud Functions runs functions-framework; Lambda calls the handler itself.
FRAMEWORK = {"gcp": "functions-framework", "aws": None}
#: The client each platform's store backend imports (``gs://``, ``s3://``).
STORE_CLIENT = {"gcp": "google-cloud-storage", "aws": "boto3"}
#: Lambda's Python runtime ships boto3, and serving only reads (GetObject, HeadObject), which
#: any boto3 does: it stays out of predict and health, whose budget counts what is
#: installed. Retrain keeps its pin: it writes with S3's conditional writes (If-None-Match,
#: If-Match; Nov 2024), and the runtime's boto3 is whatever AWS last shipped.
RUNTIME_PROVIDED = {"gcp": frozenset(), "aws": frozenset({"boto3"})}

MIB = 2**20
#: Predict installed for Python 3.12 on Linux must fit in this, leaving room under Lambda's
#: 250 MiB unzipped limit (function and layers) for growth of onnxruntime and numpy.
PREDICT_BUDGET_BYTES = 200 * MIB
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * MIB

#: The runtimes the packages are measured for: Python 3.12 on Linux x86_64. Lambda's
#: python3.12 is Amazon Linux 2023 (glibc 2.34), Cloud Functions' python312 Ubuntu 22.04
#: (glibc 2.35), so every manylinux tag up to glibc 2.34 installs. manylinux2014 alone is
#: not enough: onnxruntime ships manylinux_2_27/2_28 wheels only.
TARGET_PYTHON = "3.12"
TARGET_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")
#: What dbt writes into its project folder: build output, never sources.
_DBT_GENERATED = frozenset({"target", "logs", "dbt_packages", ".user.yml"})


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(spec: str) -> tuple[str, str]:
    """``"name[extra]>=1"`` -> ``("name", "[extra]")``, the name normalised."""
    name, extra = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?", spec).groups()
    return _normalise(name), extra or ""


def _pins() -> dict[str, str]:
    """``{normalised name: version}`` from the lock, a full ``pip freeze`` of the project."""
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name)] = version.strip()
    return pins


def _check(platform: str, function: str) -> None:
    if platform not in PLATFORMS:
        raise ValueError(f"platform: expected one of {PLATFORMS}, found {platform!r}")
    if function not in FUNCTIONS:
        raise ValueError(f"function: expected one of {FUNCTIONS}, found {function!r}")


def requirements(platform: str, function: str) -> list[str]:
    """The deployable's direct requirements, each pinned ``==`` from the lock, sorted.

    From ``pyproject.toml``: the core's dependencies plus the ``serve`` extra (predict,
    health) or the ``train`` extra (retrain), the platform's framework and its store
    client from the ``cloud`` extra, unless the runtime provides it (boto3 on Lambda,
    serving only). Raises ``ValueError`` for a requirement the lock does not pin.
    """
    _check(platform, function)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    stack = extras["train"] if function == "retrain" else extras["serve"]
    wanted = dict(_parse(spec) for spec in [*project["dependencies"], *stack])
    wanted.pop("functions-framework", None)  # added back for the platform that runs it
    if FRAMEWORK[platform]:
        wanted[FRAMEWORK[platform]] = ""
    client = STORE_CLIENT[platform]
    if function == "retrain" or client not in RUNTIME_PROVIDED[platform]:
        wanted[client] = dict(map(_parse, extras["cloud"]))[client]
    pins = _pins()
    missing = sorted(set(wanted) - set(pins))
    if missing:
        raise ValueError(f"requirements/constraints.txt: no pin for {', '.join(missing)}")
    return sorted(f"{name}{extra}=={pins[name]}" for name, extra in wanted.items())


def default_out(platform: str, function: str) -> Path:
    """``build/deploy/<platform>/<function>`` under the repository."""
    _check(platform, function)
    return ROOT / "build" / "deploy" / platform / function


def _skip_dbt_generated(folder: str, names: list[str]) -> set[str]:
    skipped = set(_SKIP(folder, names))
    if Path(folder) == ROOT / "dbt_project":
        skipped |= _DBT_GENERATED & set(names)
    return skipped


def package(platform: str, function: str, out: Path | None = None) -> Path:
    """Write the deployable of ``function`` for ``platform`` into ``out`` and return it.

    ``out`` (default :func:`default_out`) is replaced if it holds an earlier package; any
    other non-empty folder is refused, so a mistyped path cannot delete work.
    """
    _check(platform, function)
    out = Path(out) if out is not None else default_out(platform, function)
    if out.exists() and any(out.iterdir()):
        if not (out / "requirements.txt").is_file():
            raise ValueError(f"{out}: not empty and not a package; refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "functions" / ADAPTERS[platform], out / ADAPTERS[platform])
    shutil.copytree(ROOT / "src" / "segmentation", out / "segmentation", ignore=_SKIP)
    if function == "retrain":
        shutil.copytree(ROOT / "training", out / "training", ignore=_SKIP)
        shutil.copytree(ROOT / "dbt_project", out / "dbt_project", ignore=_skip_dbt_generated)
    else:  # the HTTP contract of predict and health; retrain serves none of it
        shutil.copy2(ROOT / "functions" / "openapi.yaml", out / "openapi.yaml")
    (out / "requirements.txt").write_text("\n".join(requirements(platform, function)) + "\n")
    return out


def tree_size(folder: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``folder``: what a zip holds and Lambda counts unzipped."""
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(sizes), sum(sizes)


def install(folder: Path, target: Path | None = None) -> Path:
    """pip-install ``folder/requirements.txt`` for Python 3.12 on Linux x86_64 into
    ``target`` (default: ``folder`` itself), wheels only, with the running interpreter's
    pip. Raises ``RuntimeError`` with pip's output when pip fails."""
    target = folder if target is None else target
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        # pip checks the target against the running environment's packages: irrelevant.
        "--no-warn-conflicts",
        *("--target", str(target), "--only-binary=:all:", "--implementation", "cp"),
        *("--python-version", TARGET_PYTHON),
        *(f"--platform={tag}" for tag in TARGET_PLATFORMS),
        *("-r", str(folder / "requirements.txt")),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip install for {folder} failed:\n{done.stderr[-3000:]}")
    return target


def installed_size(platform: str, function: str) -> int:
    """Bytes of the deployable installed for Python 3.12 on Linux x86_64: the code copied
    plus everything its requirements install (the platform's pip resolves the same)."""
    with tempfile.TemporaryDirectory(prefix=f"package-{platform}-{function}-") as tmp:
        return tree_size(install(package(platform, function, Path(tmp) / "package")))[1]


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def _measure(platform: str, function: str, installed: int) -> tuple[str, str | None]:
    """The installed-size note for one package, and the failure if predict is over budget."""
    note = f"  installed (py{TARGET_PYTHON} linux x86_64) {_mib(installed)}"
    if function == "predict":
        note += f" (budget {_mib(PREDICT_BUDGET_BYTES)})"
        if installed > PREDICT_BUDGET_BYTES:
            return note, (
                f"{platform}/predict installed for Python {TARGET_PYTHON} on Linux is "
                f"{_mib(installed)} ({installed} bytes), over the budget of "
                f"{_mib(PREDICT_BUDGET_BYTES)} ({PREDICT_BUDGET_BYTES} bytes, "
                "PREDICT_BUDGET_BYTES in infra/package.py)"
            )
    elif installed > LAMBDA_UNZIPPED_LIMIT_BYTES:
        note += f" (over Lambda's {_mib(LAMBDA_UNZIPPED_LIMIT_BYTES)} unzipped zip limit)"
    return note, None


def _build(platform: str, function: str, out: Path | None, args) -> str | None:
    """Build, print one line for the package; return the failure if predict is over budget."""
    built = package(platform, function, out)
    files, code = tree_size(built)
    line, failure = f"{platform}/{function}: {built}  {files} files  code {_mib(code)}", None
    if args.install:
        install(built)
    if args.measure:
        installed = tree_size(built)[1] if args.install else installed_size(platform, function)
        note, failure = _measure(platform, function, installed)
        line += note
    print(line, flush=True)
    return failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("platform", choices=PLATFORMS)
    parser.add_argument("function", choices=[*FUNCTIONS, "all"])
    parser.add_argument(
        "out", type=Path, nargs="?", help="default build/deploy/PLATFORM/FUNCTION (all: OUT/F)"
    )
    parser.add_argument("--measure", action="store_true", help="installed size, budget check")
    parser.add_argument("--install", action="store_true", help="install the wheels into OUT")
    args = parser.parse_args(argv)
    functions = FUNCTIONS if args.function == "all" else (args.function,)
    failures = []
    try:
        for function in functions:
            out = args.out / function if args.out and args.function == "all" else args.out
            if failure := _build(args.platform, function, out, args):
                failures.append(failure)
    except (RuntimeError, ValueError) as exc:  # pip failed, a pin is missing, a bad OUT
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
