"""SLURM for real: a one-node cluster on localhost (tests/slurm/cluster.sh) runs two tiny sharded grids as
job arrays plus their merge jobs, submitted by slurm/submit.py.

One scenario, in one test (pytest -n 2 must not start the cluster twice):
  1. the unsharded reference runs of an MNIST landscape (IDX fixture) and a modular-addition landscape (p = 23);
  2. both grids submitted as 2-task arrays + merge jobs. MNIST task 0 dies after its first point (the path of
     its second point is blocked, so that write fails, as a kill at that moment would leave it); modadd task 1
     is killed by scancel right after submission. SLURM cancels both merge jobs (afterok never holds);
  3. the same submit.py commands again: every task trains exactly its own missing points (the others find
     nothing to do), the points saved in round 1 are not touched, and the merge jobs run;
  4. the merged points and summaries equal the unsharded runs' exactly (a point is one ensemble in both).
Skips (with the reason) where sbatch or the daemons are not installed; under CI (CI set) that is a failure:
.ci/run installs SLURM.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER = HERE / "cluster.sh"
PY = sys.executable
TIMEOUT = 600  # seconds for all jobs of a round (they take ~30 s on 2 idle cores)


def _need_slurm():
    missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel", "slurmctld", "slurmd", "munged")
               if shutil.which(c) is None]
    if missing:
        reason = (f"SLURM is not installed ({', '.join(missing)} not found); "
                  "apt-get install -y slurmctld slurmd slurm-client munge runs this test")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster():
    """The one-node cluster: started unless it runs; the daemons this fixture started are stopped after."""
    _need_slurm()
    env = dict(os.environ, SLURM_CONF=_conf())
    r = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    started = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("started ")]
    jobs = []
    yield env, jobs
    if jobs:  # nothing of ours left queued (a failed assertion can leave a merge job waiting)
        subprocess.run(["scancel", *jobs], env=env, capture_output=True)
    if started:
        subprocess.run(["bash", str(CLUSTER), "stop", *started], capture_output=True, text=True, timeout=60)


def _conf():
    uid = os.getuid()
    return str(Path(os.environ.get("OMNIGROK_SLURM_DIR", f"/tmp/omnigrok-slurm-{uid}")) / "slurm.conf")


def _run(argv, env, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=TIMEOUT, **kw)
    assert r.returncode == 0, f"{argv}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _submit(command, env, jobs):
    out = _run([PY, "slurm/submit.py", "--shards", "2", "--slurm-args", "-c 1", "--", *command], env)
    array = re.search(r"array job (\d+)", out).group(1)
    merge = re.search(r"merge job (\d+)", out).group(1)
    jobs += [array, merge]
    return array, merge


def _wait(ids, env):
    t0 = time.time()
    while subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True, env=env).stdout.strip():
        assert time.time() - t0 < TIMEOUT, f"jobs {ids} still queued after {TIMEOUT} s"
        time.sleep(0.5)


def _states(job, env):
    """{task or job id: JobState} from scontrol (no accounting database on the test cluster)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, env=env).stdout
    return {re.search(r"JobId=(\d+)", line).group(1): re.search(r"JobState=(\w+)", line).group(1)
            for line in out.splitlines() if "JobState=" in line}


def _points(out):
    """{file name: record without its timing} of a run's grid points."""
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
            for p in sorted((Path(out) / "points").glob("*.json")) if p.is_file() and p.name != "settings.json"}


def _summary(out):
    return {k: v for k, v in json.loads((Path(out) / "summary.json").read_text()).items()
            if k not in ("wall_seconds", "missing")}


def _logs(out, array):
    return "".join(p.read_text() for p in sorted((Path(out) / "slurm").glob(f"{array}_*.out")))


@pytest.mark.xdist_group("slurm")  # one worker runs both tests: the cluster starts once (make test: --dist loadgroup)
def test_job_arrays_on_a_real_cluster(cluster, tmp_path):
    env, jobs = cluster
    env = dict(env, OMP_NUM_THREADS="1")  # the references run as the tasks do (-c 1: one thread)
    sys.path.insert(0, str(REPO / "tests"))
    from test_mnist_grok import idx_bytes
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, b in idx_bytes().items():
        (raw / name).write_bytes(b)
    grids = {
        "mnist": ["mnist_grok.py", "--mode", "landscape", "--data-dir", str(tmp_path / "mnist"),
                  "--sizes", "20,60,150", "--alphas", "0.5,1,4", "--steps", "30", "--slice-sizes", "20,150",
                  "--b-alpha", "4", "--eval-points", "5"],
        "modadd": ["modadd_transformer.py", "--mode", "landscape", "--p", "23", "--alphas", "0.3,1,3",
                   "--fracs", "0.3,0.5,0.7", "--landscape-steps", "40", "--eval-points", "6"],
    }
    ref = {k: tmp_path / f"ref-{k}" for k in grids}
    out = {k: tmp_path / f"slurm-{k}" for k in grids}
    for k, cmd in grids.items():  # 1. unsharded references
        _run([PY, *cmd, "--out", str(ref[k])], env)

    # 2. round 1: MNIST task 0 (rows N = 20 and 150) dies after its first row; modadd task 1 (frac 0.5) is killed
    (out["mnist"] / "points" / "n_train_150.json" / "blocked").mkdir(parents=True)
    a_mn, m_mn = _submit(grids["mnist"] + ["--out", str(out["mnist"])], env, jobs)
    a_ma, m_ma = _submit(grids["modadd"] + ["--out", str(out["modadd"])], env, jobs)
    subprocess.run(["scancel", f"{a_ma}_1"], env=env, check=True)
    _wait([a_mn, m_mn, a_ma, m_ma], env)
    assert "FAILED" in _states(a_mn, env).values()  # (a task cancelled while pending leaves no record)
    for m in (m_mn, m_ma):  # afterok can no longer hold: SLURM cancelled the merge jobs, nothing was drawn
        assert set(_states(m, env).values()) == {"CANCELLED"}
    assert not (out["mnist"] / "summary.json").exists() and not (out["modadd"] / "summary.json").exists()
    assert sorted(_points(out["mnist"])) == ["n_train_20.json", "n_train_60.json"]
    assert sorted(_points(out["modadd"])) == ["frac_0.3.json", "frac_0.7.json"]
    saved = {p: p.stat().st_mtime_ns for k in grids for p in (out[k] / "points").glob("*.json") if p.is_file()}

    # 3. round 2: the same commands; each task trains only its own missing points
    shutil.rmtree(out["mnist"] / "points" / "n_train_150.json")
    r2 = {k: _submit(cmd + ["--out", str(out[k])], env, jobs) for k, cmd in grids.items()}
    _wait([j for ids in r2.values() for j in ids], env)
    for k, (array, merge) in r2.items():
        states = _states(array, env) | _states(merge, env)
        assert set(states.values()) == {"COMPLETED"}, (k, states)
    logs = {k: _logs(out[k], r2[k][0]) for k in grids}
    assert "shard 0/2: 1 point(s) to train: n_train_150" in logs["mnist"]
    assert "shard 1/2: 0 point(s) to train" in logs["mnist"]
    assert "shard 0/2: 0 point(s) to train" in logs["modadd"]
    assert "shard 1/2: 1 point(s) to train: frac_0.5" in logs["modadd"]
    assert all(p.stat().st_mtime_ns == t for p, t in saved.items())  # round 1's points untouched

    # 4. merged == unsharded, exactly
    for k in grids:
        assert _points(out[k]) == _points(ref[k]), k
        assert _summary(out[k]) == _summary(ref[k]), k
        assert (out[k] / "landscape.png").is_file()


@pytest.mark.xdist_group("slurm")
def test_reproduce_submits_figures_to_the_cluster(cluster, tmp_path, monkeypatch, capsys):
    """`reproduce.py --slurm`: a grid figure as a 2-task array + merge job, a single run as one job; once they
    ran, --report-only draws REPORT.md from their folders and a second --slurm submits nothing."""
    env, jobs = cluster
    monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
    sys.path.insert(0, str(REPO))
    import reproduce as rp
    from reproduction import claims, figures
    figs = [figures.Figure("figG", "Fig. 2a", "a tiny landscape", [figures.Run(
                "landscape", "toy_teacher_student.py",
                ["--mode", "landscape", "--alphas", "0.5,1,2", "--landscape-steps", "100", "--eval-points", "5"])]),
            figures.Figure("figR", "Fig. 2b", "a tiny run", [figures.Run(
                "run", "toy_teacher_student.py", ["--steps", "200", "--eval-points", "5"])])]
    monkeypatch.setattr(figures, "FIGURES", figs)
    monkeypatch.setattr(figures, "BY_KEY", {f.key: f for f in figs})
    monkeypatch.setattr(claims, "CLAIMS", [])
    out = tmp_path / "repro"
    argv = ["--slurm", "--shards", "2", "--slurm-args", "-c 1", "--out", str(out), "--device", "cpu"]
    assert rp.main(argv) == 0
    ids = [j for d in (out / "figG" / "landscape", out / "figR" / "run")
           for j in json.loads((d / "reproduce.json").read_text())["jobs"]]
    assert len(ids) == 3  # array, merge, single
    jobs += ids
    _wait(ids, env)
    assert (out / "figG" / "landscape" / "landscape.png").is_file() and (out / "figR" / "run" / "curves.png").is_file()
    assert rp.main(["--report-only", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert report.count("SLURM job done") == 2 and "](figG/landscape/landscape.png)" in report
    capsys.readouterr()
    assert rp.main(argv) == 0  # everything finished: nothing is submitted again
    assert "$ sbatch" not in capsys.readouterr().out
