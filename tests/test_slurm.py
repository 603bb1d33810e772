"""The shipped SLURM profile (workflow/profiles/slurm) against a real one-node SLURM.

Tests marked ``slurm`` start munged/slurmctld/slurmd through the session-scoped
``slurm_cluster`` fixture (tests/slurm_cluster.py) and skip when SLURM cannot
be started here (install it with ``bash .ci/install_slurm.sh``). The two
unmarked tests only parse the profile and need no SLURM.

Run:  .venv/bin/python -m pytest -m slurm tests/test_slurm.py -v
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (fixture)

try:  # the pipeline's tiny-study helpers (tests/e2e_helpers.py)
    from e2e_helpers import jobs_run, make_tiny_project, read_config, run_snakemake, write_config
except ImportError as _err:  # pragma: no cover - only while the helpers are missing
    make_tiny_project = None
    _E2E_IMPORT_ERROR = str(_err)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"

# "Job 3 has been submitted with SLURM jobid 17 (log: ...)."
SUBMITTED_RE = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)\b")
# "SLURM-job '17' failed, SLURM status is: 'FAILED'"
FAILED_RE = re.compile(r"SLURM-job '(\d+)' failed, SLURM status is: '([A-Z_]+)'")
# "rule train_fold:" / "localrule all:" headers of Snakemake's job announcements
RULE_HEADER_RE = re.compile(r"^(local)?rule (\w+):\s*$")
JOBID_RE = re.compile(r"^\s+jobid: (\d+)\s*$")

RUN_TIMEOUT = 420  # seconds for one snakemake run against the cluster


# --------------------------------------------------------------------------- helpers


def require_plugin() -> None:
    pytest.importorskip(
        "snakemake_executor_plugin_slurm",
        reason="snakemake-executor-plugin-slurm not installed (pip install 'prmf[slurm]')",
    )


def shipped_profile() -> dict:
    return yaml.safe_load(SHIPPED_PROFILE.read_text())


def cluster_profile_for(cluster: SlurmCluster, *, jobs: int = 8) -> dict:
    """The shipped profile with the site-specific keys pointed at ``cluster``.

    Only what a user edits for their site (partitions, account) and what this
    accounting-less cluster needs (status command, short first status check,
    smaller job limit) changes; all resources stay as shipped.
    """
    require_plugin()
    profile = copy.deepcopy(shipped_profile())
    profile["jobs"] = jobs
    profile["slurm-status-command"] = "squeue"  # no slurmdbd: sacct fails
    # keep <= MinJobAge / 3, else the plugin falls back to sacct
    profile["slurm-init-seconds-before-status-checks"] = max(1, min(5, cluster.min_job_age // 3))
    profile["slurm-keep-successful-logs"] = True
    profile["latency-wait"] = 5
    resources = profile.setdefault("default-resources", {})
    resources["slurm_partition"] = cluster.partition
    resources.pop("slurm_account", None)
    for rule_resources in (profile.get("set-resources") or {}).values():
        if "slurm_partition" in rule_resources:
            rule_resources["slurm_partition"] = cluster.partition
        rule_resources.pop("slurm_account", None)
    return profile


def write_profile(directory: Path, profile: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def snakemake_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.pop("SNAKEMAKE_PROFILE", None)  # a user's global profile must not interfere
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_snakemake_cmd(
    workdir: Path, *args: str, env: dict[str, str], timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake ARGS`` in ``workdir``; kill its process group on timeout."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"snakemake {' '.join(args)} timed out after {timeout}s:\n{out[-6000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def submitted_jobs(log: str) -> list[tuple[int, str]]:
    """``[(snakemake jobid, slurm jobid)]`` from the plugin's submission lines
    (a retried job keeps its Snakemake jobid and gets a new SLURM jobid)."""
    return [(int(job), slurm) for job, slurm in SUBMITTED_RE.findall(log)]


# a failed job's own log, printed into the main log by --show-failed-logs
EMBEDDED_LOG_RE = re.compile(r"^Logfile [^\n]*:\n={40,}\n.*?^={40,}$", re.M | re.S)


def announced_jobs(log: str) -> list[tuple[str, int, bool]]:
    """``[(rule, snakemake jobid, is_local)]`` of every job Snakemake started.

    Snakemake announces a job run by itself as ``localrule NAME:`` and one
    handed to the executor (here: sbatch) as ``rule NAME:``. The logs of failed
    jobs (the inner Snakemake of a SLURM job) are left out.
    """
    jobs = []
    lines = EMBEDDED_LOG_RE.sub("", log).splitlines()
    for i, line in enumerate(lines):
        header = RULE_HEADER_RE.match(line)
        if not header:
            continue
        for follow in lines[i + 1 : i + 40]:
            if not follow.startswith((" ", "\t")):
                break
            m = JOBID_RE.match(follow)
            if m:
                jobs.append((header.group(2), int(m.group(1)), header.group(1) is not None))
                break
    return jobs


def slurm_time(minutes: int) -> str:
    """SLURM's TimeLimit rendering of ``minutes`` as squeue prints it."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    clock = f"{hours}:{mins:02d}:00" if hours else f"{mins}:00"
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else clock


def eval_resource(value, attempt: int) -> int:
    """A profile resource value as Snakemake evaluates it for ``attempt``."""
    from snakemake.resources import Resources

    res = Resources.parse([f"r={value}"], allow_expressions=True)["r"]
    if not res.is_evaluable():
        return res.value
    return res.evaluate(
        wildcards={}, input=[], attempt=attempt, threads=1, rulename="x", async_run=None
    ).value


def show(capsys, text: str) -> None:
    """Print past pytest's capture (wall times belong in the CI log)."""
    with capsys.disabled():
        print(f"\n{text}")


# --------------------------------------------------------------------------- toy workflow

TOY_SNAKEFILE = textwrap.dedent(
    r'''
    # Toy workflow for tests/test_slurm.py: one CPU rule, one GPU rule named like
    # the pipeline's training rule (so the shipped set-resources apply), one
    # localrule and one rule that always fails.
    print(f"PROFILE-SENTINEL leaked={config.get('leaked')}")

    localrules: all, summarize

    JOBINFO = (
        'jobid=${{SLURM_JOB_ID:-local}} threads={threads} '
        'gpus=${{CUDA_VISIBLE_DEVICES:-none}} leaked={config[leaked]} '
        'limits=$(if [ -n "${{SLURM_JOB_ID:-}}" ]; then '
        'squeue --noheader --jobs=$SLURM_JOB_ID --format="%l|%m|%C"; fi)'
    )
    config.setdefault("leaked", "no")

    rule all:
        input: "out/summary.txt"

    rule cpu_step:
        output: "out/cpu.txt"
        shell: "echo " + JOBINFO + " > {output}"

    # fails on its first attempt, succeeds on the retry
    rule train_fold:
        input: "out/cpu.txt"
        output: "out/train.txt"
        resources: gpu=1
        shell:
            "if [ ! -e out/train_attempt1.txt ]; then "
            "  echo " + JOBINFO + " > out/train_attempt1.txt; exit 1; "
            "fi; echo " + JOBINFO + " > {output}"

    rule summarize:
        input: "out/cpu.txt", "out/train.txt"
        output: "out/summary.txt"
        shell: "cat {input} > {output}; echo " + JOBINFO + " >> {output}"

    rule broken:
        output: "out/broken.txt"
        shell: "echo 'deliberate failure' >&2; exit 3"
    '''
)


def make_toy_project(root: Path) -> Path:
    (root / "workflow" / "profiles" / "default").mkdir(parents=True)
    (root / "workflow" / "Snakefile").write_text(TOY_SNAKEFILE)
    # a default workflow profile that must NOT be used with --workflow-profile
    (root / "workflow" / "profiles" / "default" / "config.yaml").write_text(
        "cores: 1\nresources:\n  gpu: 1\nconfig:\n  leaked: 'yes'\n"
    )
    return root


def parse_jobinfo(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


# --------------------------------------------------------------------------- no SLURM needed


def test_shipped_profile_keys() -> None:
    """The shipped profile has what the issue asks for, and its values parse."""
    require_plugin()
    profile = shipped_profile()
    assert profile["executor"] == "slurm"
    assert isinstance(profile["jobs"], int) and profile["jobs"] > 0
    assert profile["retries"] >= 1
    defaults = profile["default-resources"]
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(defaults)
    assert "slurm_account" not in defaults  # commented: site specific
    assert "# slurm_account:" in SHIPPED_PROFILE.read_text()
    train = profile["set-resources"]["train_fold"]
    assert train["gpu"] == 1
    assert train["cpus_per_gpu"] == profile["set-threads"]["train_fold"]
    # attempt scaling: more time and memory on the retry
    for key in ("runtime", "mem_mb"):
        first, second = eval_resource(train[key], 1), eval_resource(train[key], 2)
        assert second > first > 0, (key, first, second)
    for key in ("mem_mb", "runtime"):
        assert eval_resource(defaults[key], 1) > 0
    # options the plugin sets itself must not be smuggled in via slurm_extra
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    for resources in [defaults, *profile["set-resources"].values()]:
        extra = resources.get("slurm_extra", "")
        for pattern in get_forbidden_slurm_options():
            assert not re.search(pattern, extra), (pattern, extra)


def test_workflow_profile_replaces_default(tmp_path: Path) -> None:
    """``--workflow-profile X`` replaces workflow/profiles/default (no merging)."""
    require_plugin()
    project = make_toy_project(tmp_path)
    env = snakemake_env()
    control = run_snakemake_cmd(project, "-n", "all", env=env, timeout=120)
    assert control.returncode == 0, control.stdout[-4000:]
    assert "PROFILE-SENTINEL leaked=yes" in control.stdout  # default profile is live
    res = run_snakemake_cmd(
        project, "-n", "all", "--workflow-profile", str(SHIPPED_PROFILE.parent), env=env, timeout=120
    )
    assert res.returncode == 0, res.stdout[-4000:]
    assert "PROFILE-SENTINEL leaked=None" in res.stdout, res.stdout[-4000:]
    assert f"workflow specific profile {SHIPPED_PROFILE.parent}" in res.stdout


# --------------------------------------------------------------------------- real SLURM


@pytest.mark.slurm
def test_toy_workflow_through_slurm(slurm_cluster: SlurmCluster, tmp_path: Path, capsys) -> None:
    """Every non-local job is an sbatch job with the shipped resources; retries scale them."""
    cluster = slurm_cluster
    started = time.monotonic()
    project = make_toy_project(tmp_path / "toy")
    profile = cluster_profile_for(cluster)
    profile_dir = write_profile(tmp_path / "profile", profile)
    env = snakemake_env(cluster.env)

    res = run_snakemake_cmd(project, "--workflow-profile", str(profile_dir), "all", env=env)
    log = res.stdout
    (tmp_path / "snakemake.log").write_text(log)
    assert res.returncode == 0, log[-8000:]
    assert f"workflow specific profile {profile_dir}" in log
    assert "PROFILE-SENTINEL leaked=None" in log  # default profile did not leak

    submitted = submitted_jobs(log)
    # cpu_step once, train_fold twice (failed first attempt + retry); the
    # localrules all/summarize never go through sbatch
    assert len(submitted) == 3, log[-8000:]
    announced = announced_jobs(log)
    assert {(rule, local) for rule, _, local in announced} == {
        ("cpu_step", False), ("train_fold", False), ("summarize", True), ("all", True)
    }
    assert {job for job, _ in submitted} == {job for _, job, local in announced if not local}
    table = cluster.job_table()
    slurm_ids = {sid for _, sid in submitted}
    assert len(slurm_ids) == 3
    rules = sorted(table[sid]["comment"] for sid in slurm_ids)
    assert rules == ["rule_cpu_step", "rule_train_fold", "rule_train_fold"], table
    prefix = profile.get("slurm-jobname-prefix")
    if prefix:
        assert all(table[sid]["name"].startswith(f"{prefix}_") for sid in slurm_ids), table

    cpu = parse_jobinfo((project / "out" / "cpu.txt").read_text())
    first = parse_jobinfo((project / "out" / "train_attempt1.txt").read_text())
    retry = parse_jobinfo((project / "out" / "train.txt").read_text())
    summary_lines = (project / "out" / "summary.txt").read_text().splitlines()
    local = parse_jobinfo(summary_lines[-1])
    assert {cpu["jobid"], first["jobid"], retry["jobid"]} == slurm_ids
    assert local["jobid"] == "local"  # the localrule ran in snakemake's own process
    assert {cpu["leaked"], first["leaked"], retry["leaked"], local["leaked"]} == {"no"}
    assert table[first["jobid"]]["state"] == "FAILED"
    assert table[retry["jobid"]]["state"] == "COMPLETED"

    # the shipped resources reached sbatch: default-resources for cpu_step ...
    defaults = profile["default-resources"]
    assert cpu["limits"] == (
        f"{slurm_time(eval_resource(defaults['runtime'], 1))}|{eval_resource(defaults['mem_mb'], 1)}M|1"
    )
    assert cpu["gpus"] == "none"
    # ... and for train_fold: a GPU, threads, and runtime/mem growing with the attempt
    train = profile["set-resources"]["train_fold"]
    # Snakemake caps threads at the cores it sees inside the allocation; on a
    # real cluster that is the --cpus-per-gpu allocation, here the host's cores
    threads = min(profile["set-threads"]["train_fold"], len(os.sched_getaffinity(0)))
    for info, attempt in ((first, 1), (retry, 2)):
        expected = (
            f"{slurm_time(eval_resource(train['runtime'], attempt))}"
            f"|{eval_resource(train['mem_mb'], attempt)}M"
            f"|{train['cpus_per_gpu'] * train['gpu']}"
        )
        assert info["limits"] == expected, (attempt, info)
        assert info["gpus"] != "none", info  # SLURM set CUDA_VISIBLE_DEVICES
        assert info["threads"] == str(threads), info

    show(capsys, f"test_toy_workflow_through_slurm: wall time {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------- the pipeline

TIMESTAMP_RE = re.compile(r"_\d{9,11}(?:\.\d+)?\.npz")
PIPELINE_TIMEOUT = 900


def normalized_outputs(project: Path) -> dict[str, object]:
    """What must not depend on where the jobs ran: tables (export timestamps
    masked) and every run's summary metrics."""
    results = project / "results"
    out: dict[str, object] = {}
    for table in sorted((results / "tables").glob("*")):
        if table.suffix in {".md", ".tsv"}:
            out[f"tables/{table.name}"] = TIMESTAMP_RE.sub("_<ts>.npz", table.read_text())
    for summary in sorted((results / "runs").rglob("summary.json")):
        data = json.loads(summary.read_text())
        rel = summary.relative_to(results).as_posix()
        out[rel] = {k: data.get(k) for k in ("metrics", "per_fold", "epochs_run", "hyper")}
    return out


@pytest.fixture(scope="module")
def pipeline_runs(slurm_cluster: SlurmCluster, tmp_path_factory):  # noqa: F811
    """The tiny study run locally and through SLURM with the shipped profile."""
    if make_tiny_project is None:
        pytest.skip(f"tests/e2e_helpers.py not importable: {_E2E_IMPORT_ERROR}")
    cluster = slurm_cluster
    base = tmp_path_factory.mktemp("pipeline")
    profile = cluster_profile_for(cluster)
    profile_dir = write_profile(base / "profile", profile)
    # Snakemake caps a job's threads at the cores it sees; give the local run
    # the same training threads as the SLURM jobs get, so results can be equal
    threads = profile["set-threads"]["train_fold"]
    cores = len(os.sched_getaffinity(0))

    t0 = time.monotonic()
    local = make_tiny_project(base / "local")
    run_snakemake(local, "--set-threads", f"train_fold={threads}", cores=cores, timeout=PIPELINE_TIMEOUT)
    local_s = time.monotonic() - t0

    project = make_tiny_project(base / "slurm")
    env = snakemake_env(cluster.env)
    dry = run_snakemake_cmd(project, "-n", "--workflow-profile", str(profile_dir), env=env, timeout=300)
    assert dry.returncode == 0, dry.stdout[-6000:]
    t0 = time.monotonic()
    res = run_snakemake_cmd(project, "--workflow-profile", str(profile_dir), env=env, timeout=PIPELINE_TIMEOUT)
    slurm_s = time.monotonic() - t0
    (base / "snakemake-slurm.log").write_text(res.stdout)
    assert res.returncode == 0, res.stdout[-10000:]
    return {
        "cluster": cluster,
        "profile": profile,
        "profile_dir": profile_dir,
        "env": env,
        "local": local,
        "project": project,
        "dry": dry,
        "run": res,
        "times": {"local": local_s, "slurm": slurm_s},
    }


@pytest.mark.slurm
@pytest.mark.e2e
def test_pipeline_jobs_go_through_sbatch(pipeline_runs, capsys) -> None:
    """Every job of the tiny study that is not a localrule is one sbatch job."""
    log = pipeline_runs["run"].stdout
    cluster = pipeline_runs["cluster"]
    assert f"workflow specific profile {pipeline_runs['profile_dir']}" in log  # not profiles/default

    planned = jobs_run(pipeline_runs["dry"])
    assert planned.get("train_fold") == 4, planned  # 2 arms x 1 seed x 2 folds
    announced = announced_jobs(log)
    # every planned job was started exactly once (no retries in a good run)
    assert len({job for _, job, _ in announced}) == sum(planned.values()), (planned, announced)
    started = {}
    for rule, _, _ in announced:
        started[rule] = started.get(rule, 0) + 1
    assert started == planned
    remote = {job: rule for rule, job, local in announced if not local}
    local_rules = sorted({rule for rule, _, local in announced if local})

    submitted = submitted_jobs(log)
    assert sorted(job for job, _ in submitted) == sorted(remote), (submitted, remote)
    slurm_ids = [sid for _, sid in submitted]
    assert len(set(slurm_ids)) == len(slurm_ids)
    table = cluster.job_table()
    for job, sid in submitted:
        assert sid in table, (sid, table)
        assert table[sid]["comment"].startswith(f"rule_{remote[job]}"), table[sid]
        assert table[sid]["state"] == "COMPLETED", table[sid]
    train_ids = [sid for job, sid in submitted if remote[job] == "train_fold"]
    assert len(train_ids) == 4

    times = pipeline_runs["times"]
    show(
        capsys,
        f"tiny study: local run {times['local']:.1f}s, SLURM run {times['slurm']:.1f}s; "
        f"{len(submitted)} sbatch jobs "
        f"({', '.join(f'{r}={n}' for r, n in sorted(started.items()) if r not in local_rules)}); "
        f"local rules: {', '.join(local_rules) or 'none'}",
    )


@pytest.mark.slurm
@pytest.mark.e2e
def test_pipeline_outputs_equal_local_run(pipeline_runs) -> None:
    slurm = normalized_outputs(pipeline_runs["project"])
    local = normalized_outputs(pipeline_runs["local"])
    assert any(key.startswith("tables/") for key in local), sorted(local)
    assert sorted(slurm) == sorted(local)
    for key in local:
        assert slurm[key] == local[key], key


@pytest.mark.slurm
@pytest.mark.e2e
def test_pipeline_train_failure_is_a_failed_slurm_job(pipeline_runs, capsys) -> None:
    """A config value that passes validation but breaks training fails the SLURM job.

    ``training.device: cuda:7`` matches the schema (``cuda(:N)?``) and no
    cross-check looks at it, but no job here sees an 8th GPU (SLURM shows one
    GPU to each job; torch is CPU-only here), so train_fold raises at run time.
    Changing the device reruns only train_fold (a params change).
    """
    project = pipeline_runs["project"]
    cfg = read_config(project)
    cfg["training"]["device"] = "cuda:7"
    write_config(project, cfg)
    target = "results/runs/tiny/baseline/seed0/fold0/metrics.json"
    started = time.monotonic()
    res = run_snakemake_cmd(
        project,
        "--workflow-profile",
        str(pipeline_runs["profile_dir"]),
        "--retries",
        "0",
        target,
        env=pipeline_runs["env"],
        timeout=PIPELINE_TIMEOUT,
    )
    log = res.stdout
    assert res.returncode != 0, log[-8000:]
    submitted = submitted_jobs(log)
    assert len(submitted) == 1, log[-8000:]  # only the changed train job reruns
    ((_, slurm_id),) = submitted
    assert (slurm_id, "FAILED") in FAILED_RE.findall(log), log[-8000:]
    assert "Error in rule train_fold" in log
    row = pipeline_runs["cluster"].job_table()[slurm_id]
    assert row["state"] == "FAILED" and row["comment"].startswith("rule_train_fold"), row
    train_log = project / "results/logs/tiny/train/baseline/seed0/fold0.log"
    assert "cuda:7" in train_log.read_text()
    assert not (project / target).exists()
    show(capsys, f"failing train job through SLURM: wall time {time.monotonic() - started:.1f}s")


@pytest.mark.slurm
@pytest.mark.e2e
def test_packed_study_through_slurm(pipeline_runs, tmp_path) -> None:
    """training.pack: auto on the submitting host (--cores 1 there) packs each arm into one sbatch
    job; the job re-parses the workflow on its node, where auto resolves differently, and still
    runs (every layout's rule exists); the results equal the fold-by-fold SLURM run's."""
    project = make_tiny_project(tmp_path / "slurm_pack", training={"pack": "auto"})
    res = run_snakemake_cmd(project, "--workflow-profile", str(pipeline_runs["profile_dir"]),
                            env=pipeline_runs["env"], timeout=PIPELINE_TIMEOUT)
    assert res.returncode == 0, res.stdout[-10000:]
    remote = [rule for rule, _, local in announced_jobs(res.stdout) if not local]
    assert remote.count("train_pack") == 2 and "train_fold" not in remote, remote
    assert normalized_outputs(project) == normalized_outputs(pipeline_runs["project"])
