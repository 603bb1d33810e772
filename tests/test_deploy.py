"""Deployment as Snakemake users deploy catalog workflows: ``snakedeploy deploy-workflow``.

A user runs ``snakedeploy deploy-workflow https://github.com/OWNER/REPO DEST --tag vX``:
snakedeploy copies ``config/`` and ``LICENSE`` to DEST and writes ``DEST/workflow/Snakefile``,
a ``module`` whose ``snakefile`` is ``github("OWNER/REPO", path="workflow/Snakefile",
tag="vX")``; Snakemake then reads the workflow from its own clone of the repository,
never from a working tree. The test does exactly that, offline: the working tree as it is
now (tracked and untracked, not ignored, files; committed and tagged in a temporary
repository) is served as ``https://github.com/prmf/prmf-pipeline`` through git's
``url.<base>.insteadOf`` (a temporary global git config), and Snakemake's source cache
lives in a temporary ``XDG_CACHE_HOME``.

The deployed study runs in a Python environment that has every dependency but not the
prmf package (the caller's environment is not assumed to have it): the workflow imports
the prmf of its own source (exported under ``DEST/.snakemake/prmf-source/<commit>``).
Without conda here, jobs run in that same environment (``PYTHONPATH``); the hook that
``--sdm conda`` environments get (``workflow/envs/prmf.post-deploy.sh``) is tested on its
own.

snakedeploy given a local path writes ``snakefile: "workflow/Snakefile"``, which Snakemake
resolves relative to ``DEST/workflow`` (snakedeploy 0.17.1); the module-by-path case is
tested with the absolute path a user would write.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from e2e_helpers import REPO, TINY_CONFIG, jobs_run, write_config

pytestmark = pytest.mark.e2e

OWNER_REPO = "prmf/prmf-pipeline"
TAG = "v0.0.0-deploy-test"
#: what every run of the tiny study writes (rule all's targets), relative to the project
STUDY_OUTPUTS = [
    "results/data/tiny/validation.md",
    "results/runs/tiny/exp4/seed0/summary.json",
    "results/tables/comparison.md",
    "results/tables/ablation.md",
    "results/tables/robustness.md",
    "results/plots/robustness_missing_rate.png",
    "results/plots/training_curves/baseline.svg",
]

RULES = REPO / "workflow" / "rules"


def needs_git_and_snakedeploy() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    pytest.importorskip("snakedeploy", reason="pip install -e '.[test]' (snakedeploy)")


def _git(*args: str, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def snapshot_repository(dest: Path) -> str:
    """The working tree's tracked and untracked (not ignored) files, committed and tagged
    :data:`TAG` in a new repository at ``dest``; returns the commit."""
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO).split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org"}
    _git("init", "-q", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-q", "--no-gpg-sign", "-m", "snapshot of the working tree", cwd=dest, env=env)
    _git("tag", TAG, cwd=dest)
    return _git("rev-parse", "HEAD", cwd=dest)


def env_without_prmf(path: Path) -> Path:
    """A Python environment at ``path`` seeing this interpreter's packages but not prmf.

    The packages' folders are added by a ``.pth`` line, so the ``.pth`` files inside them
    (an editable install's finder) are not run. Returns its python; skips when prmf stays
    importable (a non-editable install inside site-packages).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "test_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    probe = subprocess.run([str(python), "-c", "import prmf"], cwd=path, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("prmf is installed inside site-packages (not editable): cannot hide it")
    return python


def run(python: Path, cwd: Path, *args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        logs = ""
        for log in sorted((cwd / "results" / "logs").rglob("*.log"))[-5:]:
            logs += f"\n--- {log}\n{log.read_text()[-3000:]}"
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-5000:]}\n"
                             f"STDERR:\n{proc.stderr[-8000:]}{logs}")
    return proc


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """``(dest, env, python, commit, deploy_proc)``: the workflow deployed with snakedeploy
    from a (served) GitHub URL at :data:`TAG`, with the tiny study's config."""
    needs_git_and_snakedeploy()
    tmp = tmp_path_factory.mktemp("deploy")
    src = tmp / "src"
    src.mkdir()
    commit = snapshot_repository(src)
    remote = tmp / "remote"
    (remote / OWNER_REPO).parent.mkdir(parents=True)
    _git("clone", "-q", "--bare", str(src), str(remote / OWNER_REPO), cwd=tmp)
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "file://{remote}/"]\n\tinsteadOf = https://github.com/\n')
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "XDG_CACHE_HOME": str(tmp / "cache")}
    env.pop("PYTHONPATH", None)
    dest = tmp / "dest"
    deploy = subprocess.run(
        [sys.executable, "-c", "import sys; from snakedeploy.client import main; sys.argv[0] = 'snakedeploy'; main()",
         "deploy-workflow", f"https://github.com/{OWNER_REPO}", str(dest), "--tag", TAG],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    write_config(dest, TINY_CONFIG)
    python = env_without_prmf(tmp / "env-without-prmf")
    return dest, env, python, commit, deploy


def test_snakedeploy_writes_a_module_pinned_to_the_tag(deployment):
    dest, *_ , deploy = deployment
    snakefile = (dest / "workflow" / "Snakefile").read_text()
    assert f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")' in snakefile
    assert "use rule * from prmf_pipeline" in snakefile
    assert sorted(p.name for p in (dest / "workflow").iterdir()) == ["Snakefile"]  # nothing else copied
    assert (dest / "config" / "README.md").is_file() and (dest / "config" / "mer2023.yaml").is_file()
    assert "MIT License" in (dest / "LICENSE").read_text()


def test_deployed_study_runs_in_dest_without_installed_prmf(deployment):
    dest, env, python, commit, _ = deployment
    dry = run(python, dest, "-m", "snakemake", "-n", "--cores", "2", env=env)
    assert jobs_run(dry)["train_fold"] == 4, dry.stdout  # 2 arms x 1 seed x 2 folds
    source = dest / ".snakemake" / "prmf-source" / commit
    assert (source / "prmf" / "__init__.py").is_file() and (source / "workflow" / "schemas").is_dir()
    assert not (dest / "results").exists()

    first = run(python, dest, "-m", "snakemake", "--cores", "2", env=env)
    assert jobs_run(first)["train_fold"] == 4
    for rel in STUDY_OUTPUTS:
        assert (dest / rel).is_file(), rel
    assert "Exp4: P-RMF (full)" in (dest / "results/tables/comparison.md").read_text()

    again = run(python, dest, "-m", "snakemake", "--cores", "2", env=env)
    assert jobs_run(again) == {}, again.stdout + again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr

    report = run(python, dest, "-m", "snakemake", "--report", "report.html", env=env, timeout=300)
    html = (dest / "report.html").read_text()
    assert "How to read it" in html, report.stderr  # captions read from the module's source
    assert "Training curves of arm exp4" in html  # rendered with the job's wildcards


def test_workflow_as_a_module_given_by_path(tmp_path):
    """A module whose snakefile is a local path (a clone elsewhere): paths resolve to it."""
    dest = tmp_path / "dest"
    for folder in ("workflow", "config"):
        (dest / folder).mkdir(parents=True)
    (dest / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f'module prmf_pipeline:\n    snakefile:\n        "{REPO / "workflow" / "Snakefile"}"\n'
        "    config:\n        config\n\n\nuse rule * from prmf_pipeline\n"
    )
    write_config(dest, TINY_CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dry = run(Path(sys.executable), dest, "-m", "snakemake", "-n", "--cores", "2", env=env)
    assert jobs_run(dry)["train_fold"] == 4
    assert not (dest / ".snakemake" / "prmf-source").exists()  # a local source is used in place


def test_conda_environment_hook_imports_prmf_from_the_workflow_source(tmp_path):
    """prmf.post-deploy.sh (run by --sdm conda in the new environment) makes the
    environment import prmf from PRMF_SOURCE, which the workflow sets, and nothing else."""
    python = env_without_prmf(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRMF_SOURCE")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    hook = REPO / "workflow" / "envs" / "prmf.post-deploy.sh"
    subprocess.run(["bash", str(hook)], cwd=tmp_path, env=env, check=True)
    probe = [str(python), "-c", "import prmf; print(prmf.__file__)"]
    without = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert without.returncode != 0
    with_source = subprocess.run(probe, cwd=tmp_path, env={**env, "PRMF_SOURCE": str(REPO)},
                                 capture_output=True, text=True, check=True)
    assert Path(with_source.stdout.strip()) == REPO / "prmf" / "__init__.py"


def _calls(source: str, name: str) -> list[str]:
    """The argument text of every ``name(...)`` call in ``source`` (parentheses balanced)."""
    out = []
    for m in re.finditer(rf"\b{name}\(", source):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        out.append(source[m.end():i - 1])
    return out


def test_every_report_output_has_a_caption():
    """Every report() of workflow/rules/*.smk names a caption in workflow/report/, relative to
    the rule file; figure(name) (common.smk) captions with report/<name>.rst."""
    seen = set()
    for smk in sorted(RULES.glob("*.smk")):
        source = smk.read_text()
        for args in _calls(source, "report"):
            if "**kw" in args:  # figure(): one caption per figure name, checked below
                continue
            m = re.search(r'caption="([^"]+)"', args)
            assert m, f"{smk.name}: report({args.strip()[:60]}...) has no caption"
            assert (RULES / m.group(1)).resolve().is_file(), f"{smk.name}: caption {m.group(1)} missing"
            seen.add((RULES / m.group(1)).resolve())
        for name in re.findall(r'\bfigure\("([^"]+)"', source):
            caption = (RULES / f"../report/{name}.rst").resolve()
            assert caption.is_file(), f"{smk.name}: figure {name!r} has no caption report/{name}.rst"
            seen.add(caption)
    assert seen == set((REPO / "workflow" / "report").glob("*.rst")), "a caption file no rule uses"
