"""Grokking of a graph network on real QM9 molecules (Omnigrok, Sec. 4 "Molecules", App. A; Fig. 5).

A message-passing network (NNConv 11->32 and 32->16 with edge networks 4-32-(in x out), ReLU,
global_add_pool, Linear 16-32, ReLU, Linear 32-1; PyTorch's default init, then every parameter times
alpha) regresses the isotropic polarizability (bohr^3) of the first --size QM9 molecules by GDB index,
split 50/50 into train and test, with MSE and AdamW (lr 1e-3, batch 32). With a large initial weight
norm (alpha 3) and no weight decay the training loss falls long before the test loss does: grokking
by implicit regularization (Fig. 5d). The reduced landscape (Fig. 5a-c): at fixed weight norm, the
training loss is low over a wide range of alpha (L) while the test loss has a minimum at moderate
alpha (U), at small N.

    python qm9_grok.py                                  # run, Fig. 5d top: alpha 3, wd 0, 100 molecules
    python qm9_grok.py --alpha 1                        # the control, Fig. 5d bottom
    python qm9_grok.py --compile                        # the same run through torch.compile: ~2x faster steps
    python qm9_grok.py --mode landscape                 # Fig. 5a-c on a grid sized for 2 CPU cores
    python qm9_grok.py --mode landscape --paper-grid --shard 0/8   # the paper's 22 x 21 grid, one shard

Measured here (2026-12-03; 2 AMD EPYC cores shared with other jobs, load average given;
float32, seed 0, --threads 1 as the machine was shared):
- run (alpha 3, wd 0, size 100, 1e5 steps; --threads 1): 35.5 min wall while the process got 25% of a
  core (load 5-6: two other jobs and the control below), 9.0 CPU-minutes. Train MSE <= 5 at
  step 970, test MSE <= 5 at step 18,270: 18.8x later. The test MSE sits at 100-150 bohr^6 from step
  ~200 to ~3e3 and at 20-50 until ~1.5e4 while the training MSE falls below 1 (step ~2.5e3), then drops
  to 2.2 by 2e4 and 1.2 at 1e5 (train 0.0066): the shape of the authors' Fig. 5d top. The weight norm does not fall: 56.0 -> 56.2 at 2e4 ->
  56.9 at 1e5 (+1.5%); without weight decay the late generalization here is not a return of w into the
  Goldilocks zone. Other thresholds: 2 -> 1,799 / 21,324 (11.9x); 10 -> 565 / 15,654 (27.7x).
- control (--alpha 1, same conditions, 35.7 min): train <= 5 at step 76, test at step 88 (1.16x); the
  test MSE is below 1 from step ~300 on (best 0.43 at 1.1e4, final 0.70; train 3e-4); w 18.7 -> 25.4.
  Small init generalizes at once and better: no grokking (Fig. 5d bottom).
- landscape (default grid: 9 alphas in [0.1, 10] x N = 20, 50, 100, 300, 1000, 3000, the authors' steps:
  5000, 2000, 2000, 1665, 1600, 1551; --threads 1): 30.9 min wall at 25% of a core (load ~5), 7.0
  CPU-minutes. Reduced best train MSE at N = 20: <= 1e-5 for alpha 0.32-5.6 (the L), while the test MSE
  is a U: 0.76 at alpha 0.32, 1.5 at 1, 7.7 at 1.8, 222 at 3.2. At N = 100 (the run's size): train 0.07 /
  0.016 / 1.9 and test 0.47 / 1.9 / 128 at alpha 1 / 1.8 / 3.2 - the train-test mismatch near alpha 3
  that the alpha 3 run crosses. At N = 3000 train and test agree (both U-shaped, minimum ~1.3 at alpha
  1.8, ~50 at 3.2): no mismatch, no grokking. Above alpha ~3 the fixed-norm runs do not fit even the
  training set in ~2000 steps (MSE 1e3-1e8), as in the authors' Fig. 5c slices.
- speed (bench/authors_loops.py --experiment qm9 --steps 1000 --threads 1, size 100, idle machine,
  2026-12-03): this loop 3.09x the authors' DataLoader loop in the same process (359.5 vs 116.2 steps/s);
  with --compile 6.36x a step (739.4 steps/s) and 5.44x for a whole default run with the 22.5 s of a
  cold-cache torch.compile counted (~6 s once Inductor's cache is warm). --compile is not the default: it
  needs a C++ compiler and agrees with eager only to float rounding (the test: rtol 1e-4 over 30 steps).
  The default run with --compile (idle, 1 thread): 2.7 min; train MSE <= 5 at step 970, test at 15,654
  (16.1x; eager 18.8x), final test MSE 1.41 (eager 1.20): the same grokking, not the same digits.

Data. The default source is the PyPI package qm9pack==1.0.3 (all 130,831 QM9 molecules as CSV, Index =
GDB index, SMILES, Polarizability_bohr3 = PyG QM9 target 1, same unit), found with importlib.metadata
(importlib.resources would import the package, whose __init__ needs pkg_resources). Only the first
--size rows (the CSVs are sorted by Index, so these are the first --size molecules by GDB index, the
authors' `QM9('.')[:size]`; qm9pack holds 133,885 - 3,054 molecules, the count PyG keeps after dropping
the 3,054 uncharacterized ones - assumed the same set, not checked id by id) are read and
featurized with RDKit from the SMILES with explicit hydrogens, Chem.AddHs(Chem.MolFromSmiles(s)), into
PyG QM9's features: x (11) = one-hot H/C/N/O/F, atomic number, aromatic, sp, sp2, sp3, number of bonded
hydrogens; edge_attr (4) = one-hot single/double/triple/aromatic, both directions, edges sorted by
(source, target) as PyG does. The graphs are cached under <data-dir>/qm9/ as a torch_geometric Batch,
keyed on the source (package version), the featurization, the target and the size. `--pyg-root DIR`
tries torch_geometric.datasets.QM9(DIR) first (it downloads when DIR has no copy) and falls back to
qm9pack. Where this can differ from PyG's processing: PyG reads gdb9.sdf with sanitize=False, so
RDKit perceives no aromaticity and sets no hybridization there: PyG's features have aromatic = sp = sp2
= sp3 = 0 and ring bonds as the Kekule single/double bonds written in the SDF (checked on a Kekule
benzene mol block: aromatic False, hybridization UNSPECIFIED). From the sanitized SMILES, RDKit marks
aromatic rings (aromatic = 1, AROMATIC bonds) and sets sp/sp2/sp3. `--features sdf` reproduces PyG's
(Kekulized, no aromatic flags, no hybridization); the default `rdkit` fills in every feature PyG's
QM9 defines. The atom order also differs (SMILES order, then the hydrogens; the SDF follows the XYZ
file), which the sum-pooled network does not see. Every molecule's atom count is checked against
qm9pack's N_atoms.

Choices (paper vs the authors' code, docs/REFERENCE.md, QM9):
- Model, loss, optimizer, batch 32: the authors' notebook (the paper says "GCNN with 2 conv layers",
  Adam, lr 1e-3). Sizes: --size counts train + test molecules (the authors' `size`); 50/50 split with
  its own seeded generator (the first half of a permutation is the training set).
- Steps: the authors train int(100 * 50000 / size) epochs (grokking notebook; landscape notebook:
  int(100 * 1000 / size)) of DataLoader(shuffle=True) batches over size/2 training molecules, i.e.
  ceil(size / 2 / 32) steps per epoch, the last batch short: 50000 epochs x 2 = 1e5 steps for size 100.
  We sample batches the same way (a fresh permutation per epoch, a short last batch) and convert their
  epochs to steps; --steps overrides.
- Losses: we report the MSE in bohr^6, averaged over the whole training or test set, at log-spaced
  steps. The authors' plots show the MSE of one batch divided by the batch size (loss.item() /
  num_graphs; the landscape: the epoch's summed batch MSEs over the number of graphs), about MSE / 32:
  their 0.1 is our ~3. Their test curve is one random test batch per step; ours is the whole test set.
- --loss-threshold (default 5 bohr^6): the MSE at which train or test counts as fitted in summary.json
  (train_loss_step, test_loss_step, grok_ratio). 5 bohr^6 = an RMSE of 2.2 bohr^3, 4.5% of the variance
  of the test targets (the first 100 molecules: polarizability 6.3-56.3, mean 37, variance ~100), about
  0.16 in the authors' plotted units; both the alpha 3 and alpha 1 runs end below it (1.2 and 0.7), so
  it measures when each generalizes, not whether. The grokking ratio depends on it (see above).
- Landscape (Fig. 5a-c): fixed norm (the parameters rescaled to alpha * w0 after every step, optimizer
  moments untouched), no weight decay, the authors' step rule per size, best (minimum) and final
  train/test MSE per point; the best is plotted, as the paper. All alphas of one size train at once as
  one ensemble: parameters stacked along a leading dimension, torch.func.vmap over functional_call of
  the PyG model (every member sees the same batches, as the authors' runs with seed 0 did), one Adam
  over the stacked tensors (element-wise, so exactly E runs), per-member projection with the batched
  kernel. A test checks member e against the single run.
- Speed: the training set is collated once into one big graph on the device; a step selects its
  molecules with boolean masks (no DataLoader, no collation, no .item()). On CUDA the masks' variable
  sizes make one implicit host sync per step (torch's nonzero); nothing else syncs between
  evaluations. The projection is common.project_to_norm_batched_ (the fused Triton kernel on CUDA).
- No CUDA graph (common.graph_step), unlike the other scripts: a graph needs fixed shapes, but each
  epoch's fresh permutation gives nearly every batch its own node and edge counts (far too many graphs),
  and padding to a fixed size would change the GEMM shapes and reduction lengths over nodes and edges,
  so the graphed steps would no longer be the eager ones bit for bit.
"""
import argparse
import csv
import hashlib
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common

# torch_geometric 2.x calls torch.jit.script when imported, which torch >= 2.10 flags as deprecated: without
# this, every message of this script (errors included) would come after a two-line FutureWarning.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "landscape"]
PAPER_SIZES = [int(s) for s in 10 ** np.linspace(1, 4, 22)]  # the authors' landscape grid
PAPER_ALPHAS = 10 ** np.linspace(-1, 1, 21)
DEFAULT_SIZES = [20, 50, 100, 300, 1000, 3000]  # the paper's slices (100, 3000) and four more
# qm9pack column -> PyG QM9 target index, for the targets whose unit is the same in both
TARGETS = {"Polarizability_bohr3": 1, "Dipole_debye": 0, "R2_bohr2": 5, "Heatcapacity_Cv_cal_mol_K": 11}
QM9PACK = "qm9pack"
QM9PACK_VERSION = "1.0.3"  # requirements.txt pins it; other versions are read too, and cached apart
LOSS_THRESHOLD = 5.0  # bohr^6; see the docstring


def _floats(xs):
    return ",".join(f"{x:.4g}" for x in xs)


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=1.0,
                             steps_help="optimizer steps per run (default: the authors' epochs converted to "
                                        "steps: int(100 * 50000 / size) * ceil(size / 2 / batch) for run, "
                                        "int(100 * 1000 / size) * ceil(...) per size for landscape)",
                             acc_threshold_help="unused here (QM9 is a regression task: see --loss-threshold)")
    p.set_defaults(eval_points=None)
    p.add_argument("--data-dir", default="data", help="processed graphs are cached in <data-dir>/qm9/")
    p.add_argument("--csv-dir", default=None,
                   help="a folder with qm9pack's qm9_part{1,2,3}.csv (default: the installed qm9pack's data)")
    p.add_argument("--pyg-root", default=None,
                   help="try torch_geometric.datasets.QM9(<dir>) first (downloads if the folder has no copy); "
                        "falls back to qm9pack")
    p.add_argument("--target", default="Polarizability_bohr3",
                   help=f"the regressed property, a qm9pack column: one of {', '.join(TARGETS)} "
                        "(the paper: isotropic polarizability, PyG target 1)")
    p.add_argument("--features", default="rdkit", choices=["rdkit", "sdf"],
                   help="rdkit: aromaticity and hybridization from the sanitized SMILES; sdf: as PyG's QM9 "
                        "processing (Kekule bonds, aromatic and sp/sp2/sp3 all 0); see the docstring")
    p.add_argument("--size", type=int, default=100,
                   help="molecules used, the first by GDB index, split 50/50 into train and test "
                        "(the authors' saved runs: 100)")
    p.add_argument("--alpha", type=float, default=3.0, help="init scale, w = alpha * w0 (Fig. 5d: 3; control: 1)")
    p.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay (Fig. 5d: 0, implicit regularization)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (paper App. A)")
    p.add_argument("--batch-size", type=int, default=32, help="molecules per step (the authors' code)")
    p.add_argument("--loss-threshold", type=float, default=LOSS_THRESHOLD,
                   help="MSE (bohr^6) at which train / test counts as fitted in summary.json")
    p.add_argument("--constrain", action="store_true",
                   help="run mode: hold the weight norm fixed at alpha * w0 (projection after every step)")
    p.add_argument("--compile", action="store_true",
                   help="run mode: train through torch.compile(dynamic=True) (Inductor; needs a C++ compiler): "
                        "~25 s to compile, then ~2x faster steps on CPU (measured); agrees with eager to float "
                        "rounding, not bit for bit")
    p.add_argument("--alphas", default=None,
                   help="landscape: init scales (default: 9 log-spaced in [0.1, 10]; --paper-grid: 21)")
    p.add_argument("--sizes", default=None,
                   help="landscape: data sizes N, train + test (default: 20,50,100,300,1000,3000; "
                        "--paper-grid: 22 log-spaced in [10, 1e4])")
    p.add_argument("--paper-grid", action="store_true",
                   help="landscape: the authors' grid, sizes 10**linspace(1, 4, 22) x alphas 10**linspace(-1, 1, 21)")
    p.add_argument("--slice-sizes", default="100,3000",
                   help="landscape: the two data sizes of the LU slices (paper Fig. 5c: 100 and 3000; nearest on the grid)")
    common.add_shard_arg(p, "landscape (a point = one data size, all alphas)")
    args = p.parse_args(argv)
    _resolve_defaults(args)
    _check_args(args)
    return args


def _resolve_defaults(args):
    if args.eval_points is None:
        args.eval_points = 30 if args.mode == "landscape" else 150
    if args.alphas is None:
        args.alphas = _floats(PAPER_ALPHAS if args.paper_grid else np.logspace(-1, 1, 9))
    if args.sizes is None:
        args.sizes = ",".join(str(s) for s in (PAPER_SIZES if args.paper_grid else DEFAULT_SIZES))


def _check_args(args):
    req = common.require
    common.check_standard_args(argparse.Namespace(**{**vars(args), "steps": 1 if args.steps is None else args.steps}))  # steps may be None
    req(args.steps is None or args.steps > 0, f"--steps must be positive, got {args.steps}.")
    req(args.alpha > 0, f"--alpha must be positive, got {args.alpha}.")
    req(args.wd >= 0, f"--wd must be >= 0, got {args.wd}.")
    req(args.lr > 0, f"--lr must be positive, got {args.lr}.")
    req(args.size >= 4, f"--size must be at least 4 (two molecules to train on, two to test), got {args.size}.")
    req(args.batch_size > 0, f"--batch-size must be positive, got {args.batch_size}.")
    req(args.loss_threshold > 0, f"--loss-threshold must be positive, got {args.loss_threshold}.")
    req(args.target in TARGETS, f"--target {args.target!r} is not one of {', '.join(TARGETS)}.")
    req(not args.compile or args.mode == "run", "--compile applies to --mode run (a landscape row is a vmapped ensemble).")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    req(args.alpha_list and min(args.alpha_list) > 0, f"--alphas must be positive numbers, got {args.alphas!r}.")
    args.size_list = sorted(set(common.parse_ints(args.sizes, "--sizes")))
    args.slice_list = common.parse_ints(args.slice_sizes, "--slice-sizes")
    req(args.size_list and min(args.size_list) >= 4, f"--sizes must be integers >= 4, got {args.sizes!r}.")
    req(len(args.slice_list) == 2 and min(args.slice_list) > 0,
        f"--slice-sizes takes two positive sizes (small,large), got {args.slice_sizes!r}.")
    args.shard_pair = common.parse_shard(args.shard)


def default_steps(size, batch_size, epochs_numerator):
    """The authors' epochs, int(epochs_numerator / size), as optimizer steps: ceil(n_train / batch) per epoch
    (DataLoader without drop_last). Grokking notebook: 100 * 50000; landscape notebook: 100 * 1000."""
    return max(1, int(epochs_numerator / size)) * math.ceil((size // 2) / batch_size)


# ----------------------------------------------------------------------------------------------
# data: QM9 molecules -> PyG graphs (RDKit featurization, as PyG's QM9), cached
# ----------------------------------------------------------------------------------------------
FEATURIZATION = "pyg-qm9-v1"  # bump when featurize() changes: the cache key includes it
ELEMENTS = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}  # H, C, N, O, F: PyG QM9's one-hot order


def featurize(smiles, features="rdkit"):
    """One molecule from its SMILES as a torch_geometric Data: x [n, 11], edge_index [2, 2 * bonds],
    edge_attr [2 * bonds, 4], z [n] (atomic numbers), explicit hydrogens included."""
    from rdkit import Chem
    from rdkit.Chem.rdchem import BondType, HybridizationType
    from torch_geometric.data import Data
    mol = Chem.MolFromSmiles(smiles)
    common.require(mol is not None, f"RDKit could not parse the SMILES {smiles!r}.")
    mol = Chem.AddHs(mol)
    if features == "sdf":  # as PyG's sanitize=False read of the Kekule SDF: no aromatic flags
        Chem.Kekulize(mol, clearAromaticFlags=True)
    n = mol.GetNumAtoms()
    z = torch.tensor([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=torch.long)
    common.require(all(int(v) in ELEMENTS for v in z), f"{smiles!r} has an element other than H, C, N, O, F.")
    hyb = [a.GetHybridization() if features == "rdkit" else None for a in mol.GetAtoms()]
    bond_type = {BondType.SINGLE: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}
    rows, cols, types = [], [], []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        rows += [i, j]
        cols += [j, i]
        types += 2 * [bond_type[b.GetBondType()]]
    edge_index = torch.tensor([rows, cols], dtype=torch.long).view(2, -1)
    edge_type = torch.tensor(types, dtype=torch.long)
    perm = (edge_index[0] * n + edge_index[1]).argsort()  # PyG's edge order
    edge_index, edge_type = edge_index[:, perm], edge_type[perm]
    num_hs = torch.zeros(n).index_add_(0, edge_index[1], (z[edge_index[0]] == 1).float())  # bonded H atoms
    x = torch.cat([F.one_hot(torch.tensor([ELEMENTS[int(v)] for v in z]), 5).float(),
                   torch.stack([z.float(),
                                torch.tensor([float(a.GetIsAromatic()) for a in mol.GetAtoms()]),
                                torch.tensor([float(h == HybridizationType.SP) for h in hyb]),
                                torch.tensor([float(h == HybridizationType.SP2) for h in hyb]),
                                torch.tensor([float(h == HybridizationType.SP3) for h in hyb]),
                                num_hs], 1)], 1)
    return Data(x=x, edge_index=edge_index, edge_attr=F.one_hot(edge_type, 4).float(), z=z)


def qm9pack_csvs(csv_dir=None):
    """(tag, [the three CSV paths]) of the installed qm9pack, or of --csv-dir. The package is located with
    importlib.metadata, not imported (its __init__ imports pkg_resources, gone from new setuptools)."""
    if csv_dir is not None:
        paths = [Path(csv_dir) / f"qm9_part{k}.csv" for k in (1, 2, 3)]
        common.require(paths[0].is_file(), f"--csv-dir {csv_dir} has no qm9_part1.csv (qm9pack's format).")
        stat = ",".join(f"{p.name}:{p.stat().st_size}" for p in paths if p.is_file())
        return "csv-" + hashlib.sha256(f"{Path(csv_dir).resolve()}|{stat}".encode()).hexdigest()[:10], paths
    import importlib.metadata as md
    try:
        dist = md.distribution(QM9PACK)
    except md.PackageNotFoundError:
        raise common.UserError(f"QM9 needs the package {QM9PACK} (pip install {QM9PACK}=={QM9PACK_VERSION}, "
                               "it is in requirements.txt) or --csv-dir with its CSV files.") from None
    paths = [Path(dist.locate_file(f"{QM9PACK}/data/qm9_part{k}.csv")) for k in (1, 2, 3)]
    common.require(paths[0].is_file(), f"the installed {QM9PACK} {dist.version} has no data/qm9_part1.csv; "
                                       f"reinstall {QM9PACK}=={QM9PACK_VERSION}.")
    return f"{QM9PACK}-{dist.version}", paths


def read_rows(paths, size, target):
    """The first `size` rows (Index, SMILES, N_atoms, target) of the CSVs, in order; they are sorted by
    GDB index, so these are the first `size` molecules. Stops reading once it has them."""
    csv.field_size_limit(sys.maxsize)  # the XYZ and Mulliken columns are long
    rows = []
    for path in paths:
        if len(rows) >= size or not path.is_file():
            break
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"Index", "SMILES", "N_atoms", target} - set(reader.fieldnames or [])
            common.require(not missing, f"{path} lacks the column(s) {', '.join(sorted(missing))} (qm9pack's format).")
            for k, r in enumerate(reader, start=1):
                try:
                    row = (int(r["Index"]), str(r["SMILES"]), int(r["N_atoms"]), float(r[target]))
                    if not math.isfinite(row[3]):
                        raise ValueError(row[3])
                    rows.append(row)
                except (TypeError, ValueError):  # a cut or edited line
                    raise common.UserError(f"{path} data row {k} is not a QM9 row (Index, SMILES, N_atoms, {target}); "
                                           f"reinstall {QM9PACK}=={QM9PACK_VERSION} or fix --csv-dir.") from None
                if len(rows) >= size:
                    break
    common.require(len(rows) >= size, f"asked for {size} molecules, but the QM9 CSVs hold {len(rows)}.")
    idx = [r[0] for r in rows]
    common.require(all(a < b for a, b in zip(idx, idx[1:])), "the QM9 CSV rows are not sorted by Index.")
    return rows


def load_qm9(args, size):
    """The first `size` molecules as a torch_geometric Batch (CPU) with x, edge_index, edge_attr, y (the
    target) and gdb (the GDB index). From PyG's QM9 if --pyg-root works, else qm9pack + RDKit (cached)."""
    from torch_geometric.data import Batch
    if args.pyg_root:
        import socket
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)  # an unreachable server fails in seconds instead of hanging
        try:
            from torch_geometric.datasets import QM9
            ds = QM9(args.pyg_root)[:size]
            b = Batch.from_data_list([d for d in ds])
            b.y = b.y[:, TARGETS[args.target]]
            b.gdb = torch.tensor([int(n.split("_")[-1]) for n in b.name]) if hasattr(b, "name") else b.idx + 1
            print(f"QM9 from torch_geometric.datasets.QM9({args.pyg_root})")
            return b
        except Exception as e:  # noqa: BLE001 - no network, no rdkit, a broken copy: fall back
            print(f"torch_geometric's QM9 in {args.pyg_root} failed ({str(e).strip()[:100]}); using qm9pack")
        finally:
            socket.setdefaulttimeout(old)
    tag, paths = qm9pack_csvs(args.csv_dir)
    try:
        import rdkit
    except ImportError:
        raise common.UserError("building QM9 graphs needs RDKit (pip install rdkit, it is in requirements.txt).") \
            from None
    key = f"{tag}_{FEATURIZATION}-{args.features}_rdkit-{rdkit.__version__}_{args.target}_n{size}"
    cache = Path(args.data_dir) / "qm9" / f"{key}.pt"
    if cache.is_file():
        try:
            return torch.load(cache, weights_only=False)  # our own file: a pickled torch_geometric Batch
        except Exception as e:  # noqa: BLE001 - truncated or foreign: it is only a cache, so rebuild it
            print(f"{cache} is unreadable ({str(e).strip()[:60]}); building it again.", flush=True)
    rows = read_rows(paths, size, args.target)
    data = []
    for gdb, smiles, n_atoms, y in rows:
        d = featurize(smiles, args.features)
        common.require(d.num_nodes == n_atoms, f"gdb {gdb} ({smiles}): RDKit gives {d.num_nodes} atoms with "
                                               f"hydrogens, qm9pack's N_atoms says {n_atoms}.")
        d.y, d.gdb = torch.tensor([y]), torch.tensor([gdb])
        data.append(d)
    b = Batch.from_data_list(data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(b, tmp)
    tmp.replace(cache)  # atomic: a killed run never leaves half a cache
    return b


def split(size, seed):
    """Seeded 50/50 split of range(size): (train indices, test indices), disjoint; size // 2 train."""
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return perm[:size // 2].sort().values, perm[size // 2:].sort().values


class Graphs:
    """A set of molecules collated ONCE into one big disconnected graph on the device. select(idx) cuts
    out the molecules idx with boolean masks (no DataLoader, no Python loop over graphs); chunks() are the
    whole set in pieces, built once, for evaluation."""

    def __init__(self, batch, idx, device, dtype):
        from torch_geometric.data import Batch
        b = Batch.from_data_list(batch.index_select(idx))
        self.n = len(idx)
        self.x = b.x.to(device, dtype)
        self.edge_index = b.edge_index.to(device)
        self.edge_attr = b.edge_attr.to(device, dtype)
        self.node_graph = b.batch.to(device)
        self.edge_graph = self.node_graph[self.edge_index[0]]
        self.y = b.y.to(device, dtype)
        self.arange = torch.arange(self.n, device=device)
        self._chunks = {}

    def select(self, idx):
        """(x, edge_index, edge_attr, batch, y, num_graphs) of the molecules idx (a device tensor): graph k of
        the sub-batch is molecule idx[k] (batch and y follow idx); nodes keep the set's order, which sum
        pooling does not see (a test checks the predictions against PyG's collation)."""
        sel = torch.zeros(self.n, dtype=torch.bool, device=self.x.device)
        sel[idx] = True
        nmask, emask = sel[self.node_graph], sel[self.edge_graph]
        new_node = torch.cumsum(nmask, 0) - 1  # old node id -> id in the sub-batch
        pos = torch.empty_like(self.arange)
        pos[idx] = self.arange[:len(idx)]  # old graph id -> its place in idx
        return (self.x[nmask], new_node[self.edge_index[:, emask]], self.edge_attr[emask],
                pos[self.node_graph[nmask]], self.y[idx], len(idx))

    def chunks(self, graphs_per_chunk):
        if graphs_per_chunk not in self._chunks:
            self._chunks[graphs_per_chunk] = [self.select(self.arange[i:i + graphs_per_chunk])
                                              for i in range(0, self.n, graphs_per_chunk)]
        return self._chunks[graphs_per_chunk]


class EpochBatches:
    """DataLoader(shuffle=True) without the DataLoader: each epoch a fresh permutation of range(n), cut into
    ceil(n / batch) batches, the last one short. Permutations are made ahead, many epochs at a time."""

    def __init__(self, n, batch, seed, device):
        self.n, self.device = n, device
        self.bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
        self.g = torch.Generator().manual_seed(seed + 1)  # +1: not the split's stream
        self.perms, self.row, self.k = None, 0, len(self.bounds)

    def next(self):
        if self.k == len(self.bounds):  # a new epoch
            self.k, self.row = 0, self.row + 1
            if self.perms is None or self.row == len(self.perms):
                ahead = max(1, min(1024, 2_000_000 // self.n))
                self.perms = torch.stack([torch.randperm(self.n, generator=self.g) for _ in range(ahead)]).to(self.device)
                self.row = 0
        s, e = self.bounds[self.k]
        self.k += 1
        return self.perms[self.row, s:e]


# ----------------------------------------------------------------------------------------------
# model: the authors' NNConv network; E copies at once through torch.func
# ----------------------------------------------------------------------------------------------
class OneHotEdgeNet(nn.Sequential):
    """An edge network whose inputs are one-hot bond types (QM9's 4): it is evaluated on the 4 types only and
    each edge takes its type's row (edge_attr @ table: a row pick, exact, as 1.0 * v + 0.0 * u = v). The
    same module, parameters, function and gradients as nn.Sequential on every edge, without running the
    4-32-(in x out) MLP ~600 times per step."""

    def forward(self, edge_attr):
        types = torch.eye(edge_attr.shape[-1], dtype=edge_attr.dtype, device=edge_attr.device)
        return edge_attr @ super().forward(types)


class Net(nn.Module):
    """NNConv(11 -> 32) and NNConv(32 -> 16), each with an edge network Linear(4, 32)-ReLU-Linear(32, in*out),
    ReLU after each, global_add_pool, Linear(16, 32), ReLU, Linear(32, 1): the authors' ExampleNet, same
    parameter names and init. onehot_edges=False runs the edge networks on every edge, as theirs does."""

    def __init__(self, node_features=11, edge_features=4, onehot_edges=True):
        from torch_geometric.nn import NNConv
        super().__init__()
        seq = OneHotEdgeNet if onehot_edges else nn.Sequential
        conv1_net = seq(nn.Linear(edge_features, 32), nn.ReLU(), nn.Linear(32, node_features * 32))
        conv2_net = seq(nn.Linear(edge_features, 32), nn.ReLU(), nn.Linear(32, 32 * 16))
        self.conv1 = NNConv(node_features, 32, conv1_net)  # aggr='add', root weight and bias (PyG's defaults)
        self.conv2 = NNConv(32, 16, conv2_net)
        self.fc_1 = nn.Linear(16, 32)
        self.out = nn.Linear(32, 1)

    def forward(self, x, edge_index, edge_attr, batch, num_graphs):
        from torch_geometric.nn import global_add_pool
        x = F.relu(self.conv1(x, edge_index, edge_attr))
        x = F.relu(self.conv2(x, edge_index, edge_attr))
        x = global_add_pool(x, batch, size=num_graphs)
        return self.out(F.relu(self.fc_1(x))).squeeze(-1)


def make_net(seed, dtype, device, onehot_edges=True):
    torch.manual_seed(seed)
    return Net(onehot_edges=onehot_edges).to(device, dtype)


def ensemble(net, E):
    """E copies of net's parameters (its seeded init) as one model. Returns (leaves for the optimizer,
    the same tensors with a leading ensemble dimension [E, ...] for the norms and the projection, and
    forward(inputs) -> predictions [E, num_graphs]). E = 1: the module itself (its parameters seen through
    [1, ...] views), which skips functional_call's re-parametrization (0.5 ms a step, measured); E > 1:
    torch.func.vmap over functional_call of the PyG model on stacked parameters, the graphs shared."""
    if E == 1:
        leaves = list(net.parameters())

        def forward(inputs):
            x, edge_index, edge_attr, batch, _, num_graphs = inputs
            return net(x, edge_index, edge_attr, batch, num_graphs).unsqueeze(0)
        return leaves, [p.unsqueeze(0) for p in leaves], forward
    from torch.func import functional_call, vmap
    params = {k: v.detach().unsqueeze(0).repeat(E, *([1] * v.dim())).requires_grad_() for k, v in net.named_parameters()}

    def forward(inputs):
        x, edge_index, edge_attr, batch, _, num_graphs = inputs
        return vmap(lambda p: functional_call(net, p, (x, edge_index, edge_attr, batch, num_graphs)))(params)
    return list(params.values()), list(params.values()), forward


@torch.no_grad()
def evaluate(forward, graphs, E):
    """Mean squared error [E] (float64) of every member over the whole set, in chunks sized to the ensemble
    (the conv2 edge network makes a 32 x 16 matrix per edge and member)."""
    total = torch.zeros(E, dtype=torch.float64, device=graphs.y.device)
    for inputs in graphs.chunks(max(8, 1024 // E)):
        total += (forward(inputs) - inputs[4]).double().pow(2).sum(1)
    return total / graphs.n


# ----------------------------------------------------------------------------------------------
# training: E runs (one per alpha) as one batched ensemble
# ----------------------------------------------------------------------------------------------
def train_ensemble(args, train, test, alphas, steps, *, wd, constrain, desc, device, dtype, compile=False):
    """Train E = len(alphas) models from the seed's init scaled by alphas[e], on the same batches. Returns
    (evaluated steps, per-member metric dicts {train_loss, test_loss, w}, error or None). compile: the training
    forward (and so its backward) goes through torch.compile; evaluations stay eager (other batch shapes)."""
    E = len(alphas)
    leaves, plist, forward = ensemble(make_net(args.seed, dtype, device), E)
    # dynamic: batches differ in node and edge counts; one graph serves them all (no recompile per batch)
    train_forward = torch.compile(forward, dynamic=True) if compile else forward
    w_target = common.scale_by_alpha_batched_(plist, alphas)  # every parameter times alpha
    # Adam is element-wise, so one Adam over stacked tensors is E independent ones; fused: one kernel a step
    opt = torch.optim.Adam(leaves, lr=args.lr, weight_decay=0.0, fused=True)
    batches = EpochBatches(train.n, args.batch_size, args.seed, device)

    eval_at = set(common.log_steps(steps, args.eval_points))
    keys = ("train_loss", "test_loss", "w")
    m = {k: [] for k in keys}
    evaluated, err = [], None
    bar = common.progress(steps, desc)
    last = 0
    for step in range(steps + 1):
        if step in eval_at:
            w = common.batched_norm(plist).double()
            row = torch.stack([evaluate(forward, train, E), evaluate(forward, test, E), w]).tolist()  # one sync
            finite = [math.isfinite(a) and math.isfinite(b) for a, b in zip(row[0], row[1])]
            if not any(finite):  # every member diverged: stop, keep what was measured before
                err = common.nonfinite(row[0] + row[1], step)
                break
            evaluated.append(step)
            for k, v in zip(keys, row):
                m[k].append([x if math.isfinite(x) else None for x in v])  # a diverged member: None
            bar.set_postfix_str(f"MSE train {row[0][0]:.3g} test {row[1][0]:.3g} | w {row[2][0]:.1f}" if E == 1 else
                                f"E={E} MSE train {min(row[0]):.3g}..{max(row[0]):.3g}")
        if step == steps:
            break
        inputs = train.select(batches.next())
        loss = (train_forward(inputs) - inputs[4]).pow(2).mean(1)  # [E]: each member's F.mse_loss
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if wd and not constrain:
            common.decay_weights_(plist, args.lr, wd)  # AdamW's decoupled decay, before the Adam step
        opt.step()
        if constrain:
            common.project_to_norm_batched_(plist, w_target)
        if step % 200 == 0:
            bar.update(step - last)
            last = step
    bar.update(min(step, steps) - last)
    bar.close()
    return evaluated, common.split_members(m, E), err


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def run_mode(args, out, batch, device, dtype):
    """Fig. 5d: one run; train/test MSE (log-log) and the weight norm."""
    tr, te = split(args.size, args.seed)
    train, test = Graphs(batch, tr, device, dtype), Graphs(batch, te, device, dtype)
    steps = args.steps or default_steps(args.size, args.batch_size, 100 * 50000)
    t0 = time.time()
    evaluated, [m], err = train_ensemble(args, train, test, [args.alpha], steps, wd=args.wd, constrain=args.constrain,
                                         desc=f"alpha={args.alpha:g} wd={args.wd:g} N={args.size}",
                                         device=device, dtype=dtype, compile=args.compile)
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": evaluated, **m})
    if err:
        raise err
    k = next((i for i, v in enumerate(m["train_loss"]) if v is None or m["test_loss"][i] is None), len(evaluated))
    summary = common.grok_summary(evaluated[:k], {key: v[:k] for key, v in m.items()},
                                  loss_threshold=args.loss_threshold)
    if k < len(evaluated):
        summary["diverged_at"] = evaluated[k]
    summary.update(alpha=args.alpha, wd=args.wd, size=args.size, n_train=train.n, n_test=test.n, target=args.target,
                   features=args.features, constrain=args.constrain, compile=args.compile, steps=steps, wall_seconds=wall,
                   steps_per_second=steps / wall)
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    how = "fixed norm" if args.constrain else f"wd={args.wd:g}"
    common.plot_curves(ax, evaluated[:k], {key: v[:k] for key, v in m.items()}, acc=False,
                       title=f"NNConv on QM9 {args.target}, N={args.size} ({train.n} train)\n"
                             f"alpha={args.alpha:g}, {how}")
    ax.set_ylabel("MSE (bohr^6)" if args.target == "Polarizability_bohr3" else "MSE")
    ax.axhline(args.loss_threshold, color="k", ls=":", lw=1)
    common.savefig(fig, out / "curves.png")
    print(f"train MSE <= {args.loss_threshold:g} at step {summary['train_loss_step']}, test at "
          f"{summary['test_loss_step']} (ratio {summary['grok_ratio']}); final MSE train "
          f"{summary['final_train_loss']:.3g} test {summary['final_test_loss']:.3g}; w {summary['w_init']:.1f} -> "
          f"{summary['w_final']:.1f}; {summary['steps_per_second']:.0f} steps/s")
    return summary


def grid_settings(args):
    """The flags a landscape point's numbers depend on (a points folder never mixes two settings); None for
    the other modes."""
    if args.mode != "landscape":
        return None
    keys = ("mode", "alphas", "steps", "batch_size", "eval_points", "lr", "seed", "dtype", "target", "features",
            "csv_dir", "pyg_root")
    return {k: getattr(args, k) for k in keys}


def landscape_mode(args, out, batch, device, dtype):
    """Fig. 5a-c: for each data size N (one ensemble of all alphas), minimise the training loss on the sphere
    ||w|| = alpha * w0 and record the reduced (best and final) train/test MSE."""
    sizes, alphas = args.size_list, args.alpha_list
    names = [f"size_{n}" for n in sizes]
    todo = common.shard_todo(names, out, args.shard_pair, grid_settings(args))
    for r, (n, name) in enumerate(zip(sizes, names)):
        if name not in todo:
            continue
        tr, te = split(n, args.seed)
        train, test = Graphs(batch, tr, device, dtype), Graphs(batch, te, device, dtype)
        steps = args.steps or default_steps(n, args.batch_size, 100 * 1000)
        t0 = time.time()
        evaluated, ms, err = train_ensemble(args, train, test, alphas, steps, wd=0.0, constrain=True,
                                            desc=f"landscape N={n} ({r + 1}/{len(sizes)})", device=device, dtype=dtype)
        if err:
            raise err
        pts = []
        for a, m in zip(alphas, ms):
            tl = [v for v in m["train_loss"] if v is not None]
            vl = [v for v in m["test_loss"] if v is not None]
            pts.append({"alpha": a, "size": n, "train_loss_best": min(tl, default=None),
                        "test_loss_best": min(vl, default=None), "train_loss_final": m["train_loss"][-1],
                        "test_loss_final": m["test_loss"][-1], "w": m["w"][-1]})
        common.write_json(common.point_path(out, name), {"steps": steps, "evaluated": evaluated,
                                                         "seconds": time.time() - t0, "points": pts})
    if common.is_piece(args.shard_pair):  # one task of a job array: the merge (--merge or no --shard) draws
        return common.piece_done(out, names, args.shard_pair, todo)
    saved, missing = common.collect_points(out, names)

    fields = ["train_loss_best", "test_loss_best", "train_loss_final", "test_loss_final"]
    z = {f: np.full((len(sizes), len(alphas)), np.nan) for f in fields}
    seconds = sum(rec["seconds"] for rec in saved.values())
    for r, name in enumerate(names):
        for p in saved.get(name, {"points": []})["points"]:
            j = int(np.argmin([abs(a - p["alpha"]) for a in alphas]))
            for f in fields:
                z[f][r, j] = np.nan if p[f] is None else p[f]
    done = len(saved)
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": done, "missing": missing, "target": args.target,
               "steps": {n: saved[f"size_{n}"]["steps"] for n in sizes if f"size_{n}" in saved},
               **{f: z[f].tolist() for f in fields}, "wall_seconds": seconds}
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    small, large = (sizes[int(np.argmin([abs(math.log(s / n)) for s in sizes]))] for n in args.slice_list)
    for ax, split_name in zip(axes[:2], ("train", "test")):
        common.plot_heatmap(ax, alphas, sizes, z[f"{split_name}_loss_best"], logx=True, logy=True, log_color=True,
                            cmap="Reds", title=f"reduced {split_name} MSE (best during training)",
                            xlabel="relative weight norm alpha = w/w0", ylabel="data size N (train + test)")
        zz = z[f"{split_name}_loss_best"]
        if np.isfinite(zz).sum() > 3 and len(sizes) > 1 and len(alphas) > 1:
            cs = ax.contour(*np.meshgrid(alphas, sizes), np.ma.masked_invalid(np.log10(zz)), levels=[0, 1],
                            colors="gold", linestyles="--", linewidths=1.2)
            ax.clabel(cs, fontsize=7, fmt=lambda v: f"{10 ** v:g}")
        ax.invert_yaxis()  # the paper: small N on top
        ax.axhline(small, color="tab:blue")
        ax.axhline(large, color="tab:blue", ls="--")
    ax = axes[2]
    for n, ls in ((small, "-"), (large, "--")):
        r = sizes.index(n)
        ax.plot(alphas, z["test_loss_best"][r], ls, color="tab:orange", label=f"test, N={n}")
        ax.plot(alphas, z["train_loss_best"][r], ls, color="tab:blue", label=f"train, N={n}")
    ax.set_xscale("log")
    if np.nanmax(np.concatenate([z["train_loss_best"][sizes.index(n)] for n in (small, large)]), initial=0) > 0:
        ax.set_yscale("log")  # (not while the slices' sizes are still missing: nothing to put on a log axis)
    ax.set_xlabel("relative weight norm alpha = w/w0")
    ax.set_ylabel("MSE (best during fixed-norm training)")
    ax.set_title("LU for small data, U U for large")
    ax.legend(fontsize=8)
    fig.suptitle(f"QM9 reduced landscape ({args.target}, {done}/{len(sizes)} sizes)")
    common.savefig(fig, out / "landscape.png")
    print(f"landscape: {done}/{len(sizes)} sizes in {out}")
    return summary


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    size = max(args.size_list) if args.mode == "landscape" else args.size
    common.check_grid_args(args, grid_settings(args))  # flags first, then the data (make_run_dir checks again)
    batch = load_qm9(args, size)  # every input check (data present, target, size) happens before out is made
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    summary = {"run": run_mode, "landscape": landscape_mode}[args.mode](args, out, batch, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
