"""The registry: every paper figure -> the runs that make it, at two scales. It is the one list of figures:
reproduce.py runs it and slurm/submit.py submits its grids.

Each run has the README's command (`args`, the script's defaults for the figure) and what each scale appends to
it (argparse: the last flag wins). tests/test_reproduce.py checks that the README's figure table and this
registry agree, and that every command parses with its script.
"""
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER_FIGURES = REPO / "docs" / "paper_figures"  # the authors' saved figures (see its README.md)
SCALES = ("quick", "paper")


@dataclass
class Run:
    name: str                 # folder under <out>/<figure>/
    script: str
    args: list                # the README's command for this figure (the script's defaults)
    quick: list = field(default_factory=list)   # appended at --scale quick
    paper: list = field(default_factory=list)   # appended at --scale paper
    est: dict = field(default_factory=dict)     # expected seconds per scale (1 CPU thread / one H200 guess)
    needs: str = None         # "fig/run" whose folder is passed as --landscape-from

    def command(self, scale):
        return [self.script, *self.args, *(self.quick if scale == "quick" else self.paper)]


@dataclass
class Figure:
    key: str
    label: str                # as in the paper
    title: str
    runs: list
    authors: list = field(default_factory=list)  # file names in docs/paper_figures/


TS, MNIST, IMDB, QM9 = "toy_teacher_student.py", "mnist_grok.py", "imdb_grok.py", "qm9_grok.py"
MODADD, ADD = "modadd_transformer.py", "addition_landscape.py"
# The grid modes of each script (the ones that take --shard / --merge): slurm/submit.py runs them as job arrays.
GRID_MODES = {
    TS: {"landscape", "grid", "wd-sweep"},
    MNIST: {"landscape", "n-sweep", "wd-sweep", "repr", "norm-modes"},
    MODADD: {"landscape", "wd-sweep", "norm-modes"},
    ADD: {"landscape", "n-sweep"},
    IMDB: {"landscape"},
    QM9: {"landscape"},
}


def is_grid(run):
    """A run in one of its script's grid modes."""
    mode = run.args[run.args.index("--mode") + 1] if "--mode" in run.args else None
    return mode in GRID_MODES.get(run.script, ())


# est: seconds on 2 CPU cores, one thread per run (two runs at a time). Quick: measured by `python reproduce.py`
# (2026-12-03, 60.0 min in all). Paper: the same where the command is the same; else extrapolated from the
# quick run by steps x grid points (x 1.5 s a step for IMDb's paper scale), or README's estimates (fig9
# ~4.5 h, fig10a ~8 h). `--max-run-hours 1` skips the runs estimated above an hour (GPU or cluster jobs).
FIGURES = [
    Figure("fig2a", "Fig. 2a", "Teacher-student: reduced training loss L, test loss U",
           [Run("landscape", TS, ["--mode", "landscape"], est={"quick": 34, "paper": 34})],
           ["teacher-student__landscape__teacher-student-landscape_c3_0.png"]),
    Figure("fig2b", "Fig. 2b", "Teacher-student: large init groks with small wd, small init never does",
           [Run("grid", TS, ["--mode", "grid"], est={"quick": 204, "paper": 204}),
            Run("run", TS, ["--alpha", "2", "--wd", "0.05"], est={"quick": 75, "paper": 75})],
           ["teacher-student__grokking__regression_grokking_c3_0.png"]),
    Figure("fig2c", "Fig. 2c", "Teacher-student: steps to generalize ~ 1/wd, steps to fit independent of wd",
           [Run("wd-sweep", TS, ["--mode", "wd-sweep"], est={"quick": 269, "paper": 269})]),
    Figure("fig3abc", "Fig. 3a-c", "MNIST reduced landscape over (alpha, N)",
           [Run("landscape", MNIST, ["--mode", "landscape"], paper=["--scale", "paper"],
                est={"quick": 256, "paper": 10500})],
           [f"mnist__landscape__plot-mnist-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig3d", "Fig. 3d", "MNIST grokking, 1,000 images: the authors' run (alpha 8, wd 0.01) and the "
           "README's main job (alpha 9, wd 0.3)",
           # authors: the saved run of their mnist-grokking notebook (float64 there; float32 at the quick scale,
           # where 1e5 float64 steps would take ~2x longer). run: the README's main job, App. C's alpha with wd 0.3.
           [Run("authors", MNIST, ["--alpha", "8", "--wd", "0.01"], paper=["--dtype", "float64"],
                est={"quick": 330, "paper": 700}),
            Run("run", MNIST, ["--alpha", "9", "--wd", "0.3"], est={"quick": 323, "paper": 323})],
           ["mnist__grokking__mnist-grokking_c10_0.png"]),
    Figure("fig3e", "Fig. 3e", "MNIST: time to generalize vs training-set size",
           [Run("n-sweep", MNIST, ["--mode", "n-sweep"], est={"quick": 113, "paper": 113})]),
    Figure("fig4", "Fig. 4", "IMDb LSTM: reduced landscape and (weak) grokking at alpha 6",
           [Run("run", IMDB, [], quick=["--scale", "quick", "--seq-len", "120"], paper=["--scale", "paper"],
                est={"quick": 883, "paper": 225000}),
            Run("landscape", IMDB, ["--mode", "landscape"], quick=["--scale", "quick", "--sizes", "100,300,1000"],
                paper=["--scale", "paper"], est={"quick": 361, "paper": 200000})],
           ["imdb__grokking__plot-imdb-grokking_c1_0.png"]
           + [f"imdb__landscape__plot-imdb-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig5", "Fig. 5", "QM9 graph network: reduced landscape and grokking at alpha 3 without wd",
           [Run("run", QM9, [], quick=["--steps", "30000"], est={"quick": 95, "paper": 600}),
            Run("control", QM9, ["--alpha", "1"], quick=["--steps", "30000"], est={"quick": 102, "paper": 600}),
            Run("landscape", QM9, ["--mode", "landscape"], paper=["--scale", "paper"], est={"quick": 334, "paper": 3000})],
           ["qm9__grokking__qm9-grokking_c2_0.png"]
           + [f"qm9__landscape__plot-qm9-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig6ab", "Fig. 6a,b", "Toy addition: training loss regions I/II and the test loss over (w, m)",
           # paper: the authors' notebook (21 x 21 grid, 15,000 steps, lr x0.2 every 5,000, labels (i + j) mod p);
           # quick: an 11 x 11 grid with the schedule compressed 2.5x (6,000 steps, lr x0.2 every 2,000).
           [Run("landscape", ADD, ["--mode", "landscape", "--labels", "mod"], quick=["--grid-points", "11"],
                paper=["--steps", "15000", "--lr-decay-every", "5000"], est={"quick": 266, "paper": 2500})],
           ["mod-addition__landscape__plot-addition-landscape_c1_0.png",
            "mod-addition__landscape__plot-addition-landscape_c2_1.png"]),
    Figure("fig6c", "Fig. 6c", "Toy addition: a reduced trajectory and the losses along it",
           [Run("trajectory", ADD, ["--mode", "trajectory", "--landscape-from", "DIR"], needs="fig6ab/landscape",
                est={"quick": 3, "paper": 3})],
           ["mod-addition__landscape__plot-addition-landscape_c3_2.png"]),
    Figure("fig6d", "Fig. 6d", "Toy addition: gradients at the I/II boundary",
           [Run("gradient", ADD, ["--mode", "gradient", "--landscape-from", "DIR"], needs="fig6e/n-sweep",
                est={"quick": 3, "paper": 9000})],  # paper: it waits for fig6e's grids
           ["mod-addition__landscape__plot-addition-data-dependence_c1_0.png"]),
    Figure("fig6e", "Fig. 6e", "Toy addition: the I/II boundary vs training-set size",
           # quick: 9 x 9 fine grids and the schedule compressed 3.75x (4,000 steps, lr x0.2 every 1,333)
           [Run("n-sweep", ADD, ["--mode", "n-sweep", "--labels", "mod"],
                quick=["--grid-points", "9", "--steps", "4000", "--lr-decay-every", "1333"],
                paper=["--steps", "15000", "--lr-decay-every", "5000"], est={"quick": 444, "paper": 9000})],
           ["mod-addition__landscape__plot-addition-data-dependence_c3_1.png"]),
    Figure("table1", "Table 1", "Toy addition, full trajectory (last row): representation and decoder trained",
           [Run("run", ADD, [], est={"quick": 17, "paper": 17})]),
    Figure("fig7a", "Fig. 7a", "Modular addition transformer: grokking, the weight norm rises then falls",
           [Run("run", MODADD, [], est={"quick": 1274, "paper": 1274})],
           ["mod-addition__grokking__modular-addition-grokking_c14_0.png"]),
    Figure("fig7b", "Fig. 7b", "Modular addition at fixed norm alpha 0.8: no grokking",
           # paper: the authors' constrained run (15,000 steps, float64); quick: its first 3,000 steps in float32,
           # where both curves have long reached their plateau (Fig. 7b: ~300 steps).
           [Run("run", MODADD, ["--constrain", "--alpha", "0.8"], quick=["--steps", "3000"],
                paper=["--steps", "15000", "--dtype", "float64"], est={"quick": 209, "paper": 1500})],
           ["mod-addition__grokking__modular-addition-grokking_c22_1.png",
            "mod-addition__grokking__modular-addition-grokking_c23_2.png"]),
    Figure("fig8", "Fig. 8", "MNIST landscape over representation messiness m and alpha (N = 60,000)",
           [Run("repr", MNIST, ["--mode", "repr"], paper=["--scale", "paper"], est={"quick": 190, "paper": 7400})],
           [f"mnist-repr__mnist-representation-landscape_c{c}_{i}.png" for i, c in enumerate((3, 4, 6))]),
    Figure("fig9", "Fig. 9", "Modular addition reduced landscape over (alpha, training fraction)",
           [Run("landscape", MODADD, ["--mode", "landscape"],
                quick=["--p", "31", "--alphas", "0.1,0.3,1,3,10", "--fracs", "0.2,0.4,0.6,0.8",
                       "--landscape-steps", "600", "--eval-points", "40"],
                est={"quick": 117, "paper": 16200})]),
    Figure("fig10a", "Fig. 10a", "Modular addition: steps to generalize vs weight decay, per seed",
           [Run("wd-sweep", MODADD, ["--mode", "wd-sweep"],
                quick=["--p", "31", "--train-frac", "0.5", "--wds", "0.5,0.8,1.25,2", "--seeds", "0,1",
                       "--acc-threshold", "0.9", "--sweep-steps", "10000"],
                est={"quick": 296, "paper": 28800})]),
    Figure("fig10b", "Fig. 10b", "MNIST: steps to generalize vs weight decay",
           [Run("wd-sweep", MNIST, ["--mode", "wd-sweep"], est={"quick": 679, "paper": 679})]),
    Figure("fig11", "Fig. 11", "MNIST reduced landscape with cross-entropy",
           [Run("landscape", MNIST, ["--mode", "landscape", "--loss", "ce"], paper=["--scale", "paper"],
                est={"quick": 250, "paper": 10500})]),
    Figure("fig12", "Fig. 12", "MNIST grokking with cross-entropy: a plateau, then a late rise",
           [Run("run", MNIST, ["--loss", "ce", "--alpha", "100", "--n-train", "200", "--wd", "0.03"],
                est={"quick": 370, "paper": 370})]),
]
# Beyond the paper: what each --constrain mode does to the grokking run (no paper figure, no claim: a table and a
# figure of our own, README "Norm modes"). The settings were fixed from the paper before anything was measured.
FIGURES.append(
    Figure("beyond", "Beyond the paper", "Norm modes: the grokking run against global, per-tensor and capped norms",
           # modadd: Fig. 7a's run (alpha 1, wd 1) and Fig. 7b's held norm (alpha 0.8); quick: p = 31, half the pairs
           # for training, 1e4 steps, 90% threshold (Fig. 10a's quick setting). MNIST: quick, the main job (alpha 9,
           # wd 0.3, 2e4 steps); paper, the authors' Fig. 3d run (alpha 8, wd 0.01, 1e5 steps).
           # paper est.: ~55 min a condition at 4.6 steps/s (3 seeds, 1 thread beside another run, 2026-12-04)
           [Run("modadd", MODADD, ["--mode", "norm-modes"],
                quick=["--p", "31", "--train-frac", "0.5", "--steps", "10000", "--acc-threshold", "0.9"],
                est={"quick": 2400, "paper": 13200}),
            Run("mnist", MNIST, ["--mode", "norm-modes"],
                paper=["--alpha", "8", "--wd", "0.01", "--norm-alpha", "8", "--steps", "100000"],
                est={"quick": 1700, "paper": 5700})]))
BY_KEY = {f.key: f for f in FIGURES}

# Where the quick scale differs from the paper scale, and why (REPORT.md says it under each figure).
SAME = "quick = paper: the paper's settings take minutes on a CPU."
SCALE_NOTES = {
    "fig2a": SAME, "fig2b": SAME, "fig2c": SAME, "fig3e": SAME, "fig10b": SAME, "fig12": SAME, "table1": SAME,
    "fig7a": SAME,
    "fig3abc": "quick: 9 alphas x 8 sizes x 2,000 steps; paper: the authors' 21 x 28 x 1e4 (`--scale paper`, ~3 h on "
               "one core). The quick grid keeps the slices the claims read (N = 200, the largest N, alpha ~6.3).",
    "fig11": "as Fig. 3a-c: quick 9 x 8 x 2,000 steps; paper the authors' 21 x 28 x 1e4.",
    "fig3d": "the authors' run in float32 at the quick scale, float64 (as their notebook) at the paper scale: float64 "
             "steps take ~2x longer on a CPU; the main job is the same at both.",
    "fig4": "quick: hidden 64 and reviews cut to 120 tokens, 8,000 steps; landscape N = 100, 300, 1k with >= 200 steps "
            "per point. paper: the authors' hidden 256, 500 tokens, 75,000 steps; landscape 11 alphas x 15 sizes, "
            "5 epochs per point: ~1.5 s a step on a CPU, tens of hours, a GPU job.",
    "fig5": "quick: 3e4 of the 1e5 steps (the drop of the test loss comes by ~2e4); landscape 9 alphas x 6 sizes. "
            "paper: 1e5 steps; the authors' 21 alphas x 22 sizes.",
    "fig6ab": "quick: an 11 x 11 grid, 6,000 steps with lr x0.2 every 2,000 (the notebook's schedule compressed "
              "2.5x); paper: the notebook's 21 x 21, 15,000 steps, lr x0.2 every 5,000. Both: labels (i + j) mod p "
              "and final losses, as the notebook.",
    "fig6c": "the reduced trajectory on Fig. 6a,b's landscape of the same scale.",
    "fig6d": "on Fig. 6e's N = 45 landscape of the same scale.",
    "fig6e": "quick: 9 x 9 fine grids, 4,000 steps with lr x0.2 every 1,333; paper: the notebook's 21 x 21, 15,000 "
             "steps, lr x0.2 every 5,000 (~2.5 h on one core).",
    "fig7b": "quick: the first 3,000 of the authors' 15,000 steps, in float32 (both curves plateau by ~300 steps in "
             "their figure); paper: 15,000 steps in float64, as their notebook.",
    "fig8": "quick: 6 m x 8 alphas x 2,000 steps; paper: the authors' 21 x 20 x 1e4 (~2 h on one core).",
    "fig9": "quick: p = 31, 5 alphas x 4 fractions, 600 steps (p = 113 takes ~4.5 h); its claims are decided at the "
            "paper scale only.",
    "beyond": "modadd quick: p = 31, half the pairs for training, 1e4 steps, 90% threshold; paper: p = 113, the "
              "run's 15,000 steps. MNIST quick: the main job (alpha 9, wd 0.3), 2e4 steps; paper: the authors' Fig. 3d "
              "run (alpha 8, wd 0.01), 1e5 steps.",
    "fig10a": "quick: p = 31, 4 wds x 2 seeds, 90% threshold, 1e4 steps (p = 113 takes ~8 h); decided at the paper "
              "scale only.",
}


def expand(only):
    """--only keys, plus the figures their runs need (fig6c needs fig6ab), in registry order."""
    keys = set(only)
    unknown = keys - set(BY_KEY)
    if unknown:
        print(f"reproduce.py: unknown figure(s) {', '.join(sorted(unknown))}; known: {', '.join(BY_KEY)}",
              file=sys.stderr)
        raise SystemExit(2)
    changed = True
    while changed:
        changed = False
        for k in list(keys):
            for r in BY_KEY[k].runs:
                if r.needs and r.needs.split("/")[0] not in keys:
                    keys.add(r.needs.split("/")[0])
                    changed = True
    return [f for f in FIGURES if f.key in keys]
