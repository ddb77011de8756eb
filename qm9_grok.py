"""Grokking of a graph network on real QM9 molecules (Omnigrok, Sec. 4 "Molecules", App. A; Fig. 5).

The authors' network (NNConv 11->32 and 32->16 with edge networks, sum pooling, Linear 16-32-1; PyTorch's
default init, then every parameter times alpha) regresses the isotropic polarizability (bohr^3) of the first
--size QM9 molecules by GDB index (qm9pack's CSVs, featurized with RDKit as PyG's QM9: docs/DATA.md), split
50/50 into train and test, with MSE and AdamW (lr 1e-3, batch 32).

    python qm9_grok.py                                  # run, Fig. 5d top: alpha 3, wd 0, 100 molecules
    python qm9_grok.py --alpha 1                        # the control, Fig. 5d bottom
    python qm9_grok.py --compile                        # the same run through torch.compile: ~2x faster steps
    python qm9_grok.py --mode landscape                 # Fig. 5a-c on a grid sized for 2 CPU cores
    python qm9_grok.py --mode landscape --scale paper --shard 0/8   # the paper's 22 x 21 grid, one shard

Expected (README.md "Results measured here", docs/reproduce-quick/REPORT.md; measurements, choices: docs/NOTES.md):
at alpha 3 the training MSE reaches 5 bohr^6 near step 1e3, the test MSE near 2e4 (~19x later: grokking without
weight decay; the weight norm does not fall); at alpha 1 both within ~100 steps. Landscape at small N: training MSE
low over a wide range of alpha (L), test MSE lowest at moderate alpha (U); at N = 3000 train and test agree.
"""
import csv
import hashlib
import itertools
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

MODES = ["run", "landscape"]
SCALES = {"quick": ([20, 50, 100, 300, 1000, 3000], np.logspace(-1, 1, 9)),  # the paper's slices (100, 3000) + 4
          "paper": ([int(s) for s in 10 ** np.linspace(1, 4, 22)], 10 ** np.linspace(-1, 1, 21))}  # the authors'
# qm9pack column -> PyG QM9 target index, for the targets whose unit is the same in both
TARGETS = {"Polarizability_bohr3": 1, "Dipole_debye": 0, "R2_bohr2": 5, "Heatcapacity_Cv_cal_mol_K": 11}
QM9PACK, QM9PACK_VERSION = "qm9pack", "1.0.3"  # requirements.txt pins it; other versions are read too, cached apart


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0], renamed={"--paper-grid": "--scale paper"})
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=1.0,
                             steps_help="optimizer steps per run (default: the authors' int(100 * 50000 / size) "
                                        "epochs of ceil(size / 2 / batch) steps; landscape: 100 * 1000 / size)",
                             acc_threshold_help="unused here (QM9 is a regression task: see --loss-threshold)")
    p.set_defaults(eval_points=None)
    p.add_argument("--data-dir", default="data", help="processed graphs are cached in <data-dir>/qm9/")
    p.add_argument("--csv-dir", help="a folder with qm9pack's qm9_part{1,2,3}.csv (default: the installed qm9pack's)")
    p.add_argument("--pyg-root", help="try torch_geometric.datasets.QM9(<dir>) first (it downloads), then qm9pack")
    p.add_argument("--target", default="Polarizability_bohr3",
                   help=f"the regressed property, a qm9pack column: one of {', '.join(TARGETS)}")
    p.add_argument("--features", default="rdkit", choices=["rdkit", "sdf"],
                   help="rdkit: aromaticity and hybridization from the sanitized SMILES; sdf: as PyG's QM9 "
                        "processing (Kekule bonds, aromatic and sp/sp2/sp3 all 0)")
    p.add_argument("--size", type=int, default=100, help="molecules used, the first by GDB index, split 50/50")
    p.add_argument("--alpha", type=float, default=3.0, help="init scale, w = alpha * w0 (Fig. 5d: 3; control: 1)")
    p.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay (Fig. 5d: 0)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (paper App. A)")
    p.add_argument("--batch-size", type=int, default=32, help="molecules per step (the authors' code)")
    p.add_argument("--loss-threshold", type=float, default=5.0, help="MSE (bohr^6) that counts as fitted")
    common.add_constrain_arg(p)
    p.add_argument("--compile", action="store_true", help="run mode: torch.compile (a C++ compiler; ~25 s, then ~2x "
                   "faster steps on CPU); agrees with eager to float rounding, not bit for bit")
    p.add_argument("--scale", default="quick", choices=list(SCALES),
                   help="landscape grid: quick = 9 alphas in [0.1, 10] x N = 20,...,3000; paper = the authors' 21 x 22")
    p.add_argument("--alphas", help="landscape: init scales (none given: from --scale)")
    p.add_argument("--sizes", help="landscape: data sizes N, train + test (none given: from --scale)")
    p.add_argument("--slice-sizes", default="100,3000", help="landscape: the two N of the LU slices (Fig. 5c)")
    common.add_shard_arg(p, "landscape (a point = one data size, all alphas)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    sizes, alphas = SCALES[args.scale]
    for k, v in {"eval_points": 30 if args.mode == "landscape" else 150, "alphas": ",".join(f"{a:.4g}" for a in alphas),
                 "sizes": ",".join(str(s) for s in sizes)}.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    req = common.require
    common.check_standard_args(args)
    common.positive(args, "alpha", "lr", "batch_size", "loss_threshold")
    common.nonnegative(args, "wd")
    req(args.size >= 4, f"--size must be at least 4 (two molecules to train on, two to test), got {args.size}.")
    req(args.target in TARGETS, f"--target {args.target!r} is not one of {', '.join(TARGETS)}.")
    req(not args.compile or args.mode == "run", "--compile applies to --mode run (a landscape row is a vmapped ensemble).")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    req(args.alpha_list and min(args.alpha_list) > 0, f"--alphas must be positive numbers, got {args.alphas!r}.")
    args.size_list = sorted(set(common.parse_ints(args.sizes, "--sizes")))
    req(args.size_list and min(args.size_list) >= 4, f"--sizes must be integers >= 4, got {args.sizes!r}.")
    args.slice_list = common.parse_ints(args.slice_sizes, "--slice-sizes")
    req(len(args.slice_list) == 2 and min(args.slice_list) > 0,
        f"--slice-sizes takes two positive sizes (small,large), got {args.slice_sizes!r}.")
    args.shard_pair = common.parse_shard(args.shard)
    return args


def default_steps(size, batch_size, epochs_numerator):
    """The authors' epochs, int(epochs_numerator / size), as optimizer steps: ceil(n_train / batch) per epoch
    (DataLoader without drop_last). Grokking notebook: 100 * 50000; landscape notebook: 100 * 1000."""
    return max(1, int(epochs_numerator / size)) * math.ceil((size // 2) / batch_size)


# --- data: QM9 molecules -> PyG graphs (RDKit featurization, as PyG's QM9), cached -----------------------------
FEATURIZATION = "pyg-qm9-v1"  # bump when featurize() changes: the cache key includes it
ELEMENTS = {1: 0, 6: 1, 7: 2, 8: 3, 9: 4}  # H, C, N, O, F: PyG QM9's one-hot order


def featurize(smiles, features="rdkit"):
    """One molecule from its SMILES with explicit hydrogens, as a torch_geometric Data with PyG QM9's features:
    x [n, 11] (one-hot H C N O F, Z, aromatic, sp, sp2, sp3, bonded H), edge_attr [2 * bonds, 4] (one-hot single,
    double, triple, aromatic), edge_index sorted by (source, target) as PyG's, z [n]. PyG reads its SDF with
    sanitize=False (aromatic and hybridization all 0, Kekule rings): features="sdf" does so, "rdkit" fills them."""
    from rdkit import Chem
    from rdkit.Chem.rdchem import BondType, HybridizationType
    from torch_geometric.data import Data
    mol = Chem.MolFromSmiles(smiles)
    common.require(mol is not None, f"RDKit could not parse the SMILES {smiles!r}.")
    mol = Chem.AddHs(mol)
    if features == "sdf":
        Chem.Kekulize(mol, clearAromaticFlags=True)
    atoms, n = list(mol.GetAtoms()), mol.GetNumAtoms()
    z = torch.tensor([a.GetAtomicNum() for a in atoms], dtype=torch.long)
    common.require(all(int(v) in ELEMENTS for v in z), f"{smiles!r} has an element other than H, C, N, O, F.")
    kind = {BondType.SINGLE: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), kind[b.GetBondType()]) for b in mol.GetBonds()]
    edges = torch.tensor([e for i, j, t in bonds for e in ((i, j, t), (j, i, t))], dtype=torch.long).view(-1, 3)
    edges = edges[(edges[:, 0] * n + edges[:, 1]).argsort()]  # PyG's edge order
    edge_index = edges[:, :2].t().contiguous()
    num_hs = torch.zeros(n).index_add_(0, edge_index[1], (z[edge_index[0]] == 1).float())  # bonded H atoms
    sp = (HybridizationType.SP, HybridizationType.SP2, HybridizationType.SP3)
    flags = torch.tensor([[a.GetIsAromatic()] + [features == "rdkit" and a.GetHybridization() == t for t in sp]
                          for a in atoms], dtype=torch.float)
    x = torch.cat([F.one_hot(torch.tensor([ELEMENTS[int(v)] for v in z]), 5).float(), z.float()[:, None], flags,
                   num_hs[:, None]], 1)
    return Data(x=x, edge_index=edge_index, edge_attr=F.one_hot(edges[:, 2], 4).float(), z=z)


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
    """The first `size` rows (Index, SMILES, N_atoms, target) of the CSVs, which are sorted by GDB index: the
    first `size` molecules (the authors' QM9('.')[:size]). Stops reading once it has them."""
    csv.field_size_limit(sys.maxsize)  # the XYZ and Mulliken columns are long
    rows = []
    for path in paths:
        if len(rows) >= size or not path.is_file():
            break
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"Index", "SMILES", "N_atoms", target} - set(reader.fieldnames or [])
            common.require(not missing, f"{path} lacks the column(s) {', '.join(sorted(missing))} (qm9pack's format).")
            for k, r in zip(range(1, size - len(rows) + 1), reader):
                try:
                    row = (int(r["Index"]), str(r["SMILES"]), int(r["N_atoms"]), float(r[target]))
                except (TypeError, ValueError):
                    row = None
                common.require(row is not None and math.isfinite(row[3]),  # not: a cut or edited line
                               f"{path} data row {k} is not a QM9 row (Index, SMILES, N_atoms, {target}); "
                               f"reinstall {QM9PACK}=={QM9PACK_VERSION} or fix --csv-dir.")
                rows.append(row)
    common.require(len(rows) >= size, f"asked for {size} molecules, but the QM9 CSVs hold {len(rows)}.")
    common.require(all(a[0] < b[0] for a, b in zip(rows, rows[1:])), "the QM9 CSV rows are not sorted by Index.")
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
            b = Batch.from_data_list(list(QM9(args.pyg_root)[:size]))
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
    data = []
    for gdb, smiles, n_atoms, y in read_rows(paths, size, args.target):
        d = featurize(smiles, args.features)
        common.require(d.num_nodes == n_atoms, f"gdb {gdb} ({smiles}): RDKit gives {d.num_nodes} atoms with "
                                               f"hydrogens, qm9pack's N_atoms says {n_atoms}.")
        d.y, d.gdb = torch.tensor([y]), torch.tensor([gdb])
        data.append(d)
    b = Batch.from_data_list(data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    common.save_atomic(b, cache)
    return b


def split(size, seed):
    """Seeded 50/50 split of range(size): (train indices, test indices), disjoint; size // 2 train."""
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return perm[:size // 2].sort().values, perm[size // 2:].sort().values


class Graphs:
    """A set of molecules collated ONCE into one disconnected graph on the device; select(idx) cuts out molecules
    with boolean masks (no DataLoader, no loop over graphs); chunks(): the whole set in pieces, for evaluation."""

    def __init__(self, batch, idx, device, dtype):
        from torch_geometric.data import Batch
        b = Batch.from_data_list(batch.index_select(idx))
        self.n = len(idx)
        self.x, self.edge_attr, self.y = (t.to(device, dtype) for t in (b.x, b.edge_attr, b.y))
        self.edge_index, self.node_graph = b.edge_index.to(device), b.batch.to(device)
        self.edge_graph = self.node_graph[self.edge_index[0]]
        self.arange = torch.arange(self.n, device=device)
        self._chunks = {}

    def select(self, idx):
        """(x, edge_index, edge_attr, batch, y, num_graphs) of the molecules idx: graph k is molecule idx[k]; nodes
        keep the set's order, which sum pooling does not see (tested against PyG's collation). No CUDA graph: the
        shapes change every step, and padding them would change the reductions and the numbers."""
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


# --- model: the authors' NNConv network; E copies at once through torch.func ----------------------------------
class OneHotEdgeNet(nn.Sequential):
    """An edge network on one-hot bond types, evaluated on the 4 types only: each edge takes its type's row
    (edge_attr @ table, exact, as 1.0 * v + 0.0 * u = v). The same parameters, function and gradients as
    nn.Sequential on every edge, without running the 4-32-(in x out) MLP ~600 times per step."""

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


def make_net(seed, dtype, device):
    torch.manual_seed(seed)
    return Net().to(device, dtype)


def ensemble(net, E):
    """E copies of net's parameters as one model: (leaves for the optimizer, the same with a leading dimension
    [E, ...] for norms and projection, forward(inputs) -> predictions [E, num_graphs]). E = 1: the module itself
    (no functional_call re-parametrization: 0.5 ms a step, measured); E > 1: vmap over functional_call."""
    if E == 1:
        leaves = list(net.parameters())
        return leaves, [p.unsqueeze(0) for p in leaves], lambda inputs: net(*inputs[:4], inputs[5]).unsqueeze(0)
    from torch.func import functional_call, vmap
    params = {k: v.detach().unsqueeze(0).repeat(E, *([1] * v.dim())).requires_grad_() for k, v in net.named_parameters()}

    def forward(inputs):
        graphs = (*inputs[:4], inputs[5])  # x, edge_index, edge_attr, batch, num_graphs (inputs[4]: y)
        return vmap(lambda p: functional_call(net, p, graphs))(params)
    return list(params.values()), list(params.values()), forward


@torch.no_grad()
def evaluate(forward, graphs, E):
    """Mean squared error [E] (float64) of every member over the whole set, in chunks sized to the ensemble
    (the conv2 edge network makes a 32 x 16 matrix per edge and member)."""
    total = torch.zeros(E, dtype=torch.float64, device=graphs.y.device)
    for inputs in graphs.chunks(max(8, 1024 // E)):
        total += (forward(inputs) - inputs[4]).double().pow(2).sum(1)
    return total / graphs.n


# --- training: E runs (one per alpha) as one batched ensemble ------------------------------------------------
def train_ensemble(args, train, test, alphas, steps, *, wd, constrain, desc, device, dtype, compile=False, ckpt=None):
    """Train E = len(alphas) models from the seed's init scaled by alphas[e], on the same batches. Returns
    (evaluated steps, per-member metric dicts {train_loss, test_loss, w}, error or None). compile: the training
    forward and backward go through torch.compile. ckpt: a common.Checkpoint to resume from and save to."""
    E = len(alphas)
    leaves, plist, forward = ensemble(make_net(args.seed, dtype, device), E)
    # dynamic: batches differ in node and edge counts; one graph serves them all (no recompile per batch)
    train_forward = torch.compile(forward, dynamic=True) if compile else forward
    w_target = common.scale_by_alpha_batched_(plist, alphas)  # every parameter times alpha
    targets = constrain and common.norm_targets(plist, w_target, constrain)
    # Adam is element-wise, so one Adam over stacked tensors is E independent ones; fused: one kernel a step
    opt = torch.optim.Adam(leaves, lr=args.lr, weight_decay=0.0, fused=True)

    eval_at = set(common.log_steps(steps, args.eval_points))
    m = {k: [] for k in ("train_loss", "test_loss", "w")}
    evaluated, err, start = [], None, 0
    if state := ckpt and ckpt.resume(leaves, opt):
        evaluated, m, start = state["evaluated"], state["m"], state["step"]
    batch_ids = itertools.islice(common.epoch_batches(train.n, args.batch_size, args.seed, device), start, None)
    bar = common.progress(steps, desc)
    bar.update(start)
    for step in range(start, steps + 1):
        if step in eval_at and step not in evaluated[-1:]:
            w = common.batched_norm(plist).double()
            row = torch.stack([evaluate(forward, train, E), evaluate(forward, test, E), w]).tolist()  # one sync
            if not any(math.isfinite(a) and math.isfinite(b) for a, b in zip(row[0], row[1])):
                err = common.nonfinite(row[0] + row[1], step)  # every member diverged: stop, keep what was measured
                break
            evaluated.append(step)
            for k, v in zip(m, row):
                m[k].append([x if math.isfinite(x) else None for x in v])  # a diverged member: None
            bar.set_postfix_str(f"MSE train {row[0][0]:.3g} test {row[1][0]:.3g} | w {row[2][0]:.1f}" if E == 1 else
                                f"E={E} MSE train {min(row[0]):.3g}..{max(row[0]):.3g}")
            if ckpt:
                ckpt.save(lambda: {"step": step, "evaluated": evaluated, "m": m, "params": leaves, "opt": opt.state_dict()})
        if step == steps:
            break
        inputs = train.select(next(batch_ids))
        loss = (train_forward(inputs) - inputs[4]).pow(2).mean(1)  # [E]: each member's F.mse_loss
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if wd and common.decays(constrain):
            common.decay_weights_(plist, args.lr, wd)  # AdamW's decoupled decay, before the Adam step
        opt.step()
        if constrain:
            common.project_(plist, targets, constrain)
        bar.update()
    bar.close()
    return evaluated, common.split_members(m, E), err


# --- modes ---------------------------------------------------------------------------------------------------
def run_mode(args, out, batch, device, dtype):
    """Fig. 5d: one run; train/test MSE (log-log) and the weight norm."""
    train, test = (Graphs(batch, idx, device, dtype) for idx in split(args.size, args.seed))
    steps = args.steps or default_steps(args.size, args.batch_size, 100 * 50000)
    t0 = time.time()
    ckpt = common.Checkpoint(out, args.checkpoint_every)
    evaluated, [m], err = train_ensemble(args, train, test, [args.alpha], steps, wd=args.wd, constrain=args.constrain,
                                         desc=f"alpha={args.alpha:g} wd={args.wd:g} N={args.size}",
                                         device=device, dtype=dtype, compile=args.compile, ckpt=ckpt)
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": evaluated, **m})
    ckpt.done()
    if err:
        raise err
    k = next((i for i, v in enumerate(m["train_loss"]) if v is None or m["test_loss"][i] is None), len(evaluated))
    curves = {key: v[:k] for key, v in m.items()}  # up to a divergence
    summary = common.grok_summary(evaluated[:k], curves, loss_threshold=args.loss_threshold)
    if k < len(evaluated):
        summary["diverged_at"] = evaluated[k]
    summary.update(alpha=args.alpha, wd=args.wd, size=args.size, n_train=train.n, n_test=test.n, target=args.target,
                   features=args.features, constrain=args.constrain, compile=args.compile, steps=steps, wall_seconds=wall,
                   steps_per_second=steps / wall)
    common.write_json(out / "summary.json", summary)

    fig, ax = common.plt().subplots(figsize=(6.5, 4.2))
    how = (f"{args.constrain} norm, " if args.constrain else "") + f"wd={args.wd if common.decays(args.constrain) else 0:g}"
    common.plot_curves(ax, evaluated[:k], curves, acc=False, title=f"NNConv on QM9 {args.target}, N={args.size} "
                                                                   f"({train.n} train)\nalpha={args.alpha:g}, {how}")
    ax.set_ylabel("MSE (bohr^6)" if args.target == "Polarizability_bohr3" else "MSE")
    ax.axhline(args.loss_threshold, color="k", ls=":", lw=1)
    common.savefig(fig, out / "curves.png")
    s = summary
    print(f"train MSE <= {args.loss_threshold:g} at step {s['train_loss_step']}, test at {s['test_loss_step']} (ratio "
          f"{s['grok_ratio']}); final MSE train {s['final_train_loss']:.3g} test {s['final_test_loss']:.3g}; w "
          f"{s['w_init']:.1f} -> {s['w_final']:.1f}")
    return summary


def grid_settings(args):
    """The flags a landscape point's numbers depend on (a points folder never mixes two settings); None for run."""
    keys = ("mode", "alphas", "steps", "batch_size", "eval_points", "lr", "seed", "dtype", "target", "features",
            "csv_dir", "pyg_root")
    return {k: getattr(args, k) for k in keys} if args.mode == "landscape" else None


def landscape_mode(args, out, batch, device, dtype):
    """Fig. 5a-c: for each data size N (a grid point: one ensemble of all alphas), minimise the training loss on
    the sphere ||w|| = alpha * w0 and record the reduced (best and final) train/test MSE."""
    sizes, alphas = args.size_list, args.alpha_list
    names = [f"size_{n}" for n in sizes]

    def train_rows(todo):
        for r, (n, name) in enumerate(zip(sizes, names)):
            if name not in todo:
                continue
            train, test = (Graphs(batch, idx, device, dtype) for idx in split(n, args.seed))
            steps = args.steps or default_steps(n, args.batch_size, 100 * 1000)
            t0 = time.time()
            evaluated, ms, err = train_ensemble(args, train, test, alphas, steps, wd=0.0, constrain="global", device=device,
                                                dtype=dtype, desc=f"landscape N={n} ({r + 1}/{len(sizes)})")
            if err:
                raise err
            best = [{f"{s}_loss_best": min((v for v in m[f"{s}_loss"] if v is not None), default=None)
                     for s in ("train", "test")} for m in ms]  # a diverged member's steps are None
            pts = [{"alpha": a, "size": n, **b, "train_loss_final": m["train_loss"][-1],
                    "test_loss_final": m["test_loss"][-1], "w": m["w"][-1]} for a, m, b in zip(alphas, ms, best)]
            yield name, {"steps": steps, "evaluated": evaluated, "seconds": time.time() - t0, "points": pts}

    got = common.run_grid(args, out, names, grid_settings(args), train_rows)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    saved, missing = got
    fields = ["train_loss_best", "test_loss_best", "train_loss_final", "test_loss_final"]
    z = common.grid_z(saved, names, alphas, fields)
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": len(saved), "missing": missing, "target": args.target,
               "steps": {n: saved[f"size_{n}"]["steps"] for n in sizes if f"size_{n}" in saved},
               **{f: z[f].tolist() for f in fields}, "wall_seconds": sum(rec["seconds"] for rec in saved.values())}
    common.write_json(out / "summary.json", summary)
    common.plot_lu_landscape(out / "landscape.png", alphas, sizes, z["train_loss_best"], z["test_loss_best"],
                             what="MSE", levels=[1, 10], slices=[common.nearest(sizes, n) for n in args.slice_list],
                             log_color=True, size_label="data size N (train + test)",
                             title=f"QM9 reduced landscape ({args.target}, {len(saved)}/{len(sizes)} sizes)")
    print(f"landscape: {len(saved)}/{len(sizes)} sizes in {out}")
    return summary


def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    common.check_grid_args(args, grid_settings(args))  # flags first, then the data (make_run_dir checks again)
    batch = load_qm9(args, max(args.size_list) if args.mode == "landscape" else args.size)  # before out is made
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    summary = {"run": run_mode, "landscape": landscape_mode}[args.mode](args, out, batch, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
