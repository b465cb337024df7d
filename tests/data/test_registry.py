"""Registry: resolve order, clear errors, fetch with digest checks (no network: file:// URLs and a
fake opener)."""

import hashlib
import io
import json
from pathlib import Path

import pytest

from fairtrial.data import registry
from fairtrial.errors import UserError

DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def test_registry_digests_match_shared_copies():
    for name in registry.names():
        for f in registry.info(name)["files"][:5]:
            assert registry.sha256_file(DATA / name / f["path"]) == f["sha256"], (name, f["path"])
            assert f["url"].startswith("https://raw.githubusercontent.com/")


def test_resolve_order(tmp_path, monkeypatch):
    assert registry.resolve(str(tmp_path)) == tmp_path  # an existing path as is
    monkeypatch.setenv("FAIRTRIAL_DATA_HOME", str(tmp_path / "home"))
    assert registry.resolve("cefr-sp").resolve() == (DATA / "cefr-sp").resolve()  # shared/data beside the project
    mirror = tmp_path / "mirror"
    for f in registry.info("cefr-sp")["files"]:
        (mirror / "cefr-sp").mkdir(parents=True, exist_ok=True)
        (mirror / "cefr-sp" / f["path"]).write_text("x")
    monkeypatch.setenv("FAIRTRIAL_DATA", str(mirror))
    assert registry.resolve("cefr-sp") == mirror / "cefr-sp"  # the mirror comes first


def test_resolve_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match='unknown data set "cefr-s"; did you mean "cefr-sp"'):
        registry.info("cefr-s")
    with pytest.raises(UserError, match="neither an existing file or folder nor a known data set"):
        registry.resolve(str(tmp_path / "nope"))
    monkeypatch.setattr(registry, "_shared_candidates", lambda: [])
    monkeypatch.setenv("FAIRTRIAL_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FAIRTRIAL_DATA", raising=False)
    with pytest.raises(UserError, match=r"fairtrial data fetch gsm8k.*FAIRTRIAL_DATA"):
        registry.resolve("gsm8k")


def _fake_registry(monkeypatch, tmp_path, content=b"hello\n", digest=None):
    src = tmp_path / "upstream.txt"
    src.write_bytes(content)
    reg = {"toy": {"description": "toy", "licence": "MIT", "homepage": "x", "ref": "abc",
                   "pinned": True, "citation": "",
                   "files": [{"path": "sub/a.txt", "url": src.as_uri(), "bytes": len(content),
                              "sha256": digest or hashlib.sha256(content).hexdigest()}]}}
    monkeypatch.setattr(registry, "_registry", lambda: reg)
    return reg


def test_fetch_file_url_and_digest(tmp_path, monkeypatch):
    _fake_registry(monkeypatch, tmp_path)
    monkeypatch.setenv("FAIRTRIAL_DATA_HOME", str(tmp_path / "home"))
    out = registry.fetch("toy")
    assert out == tmp_path / "home" / "toy" and (out / "sub" / "a.txt").read_bytes() == b"hello\n"
    assert registry.resolve("toy") == out
    assert [d["name"] for d in registry.list_datasets()] == ["toy"]


def test_fetch_digest_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _fake_registry(monkeypatch, tmp_path, digest="0" * 64)
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="does not match the registry"):
        registry.fetch("toy", dest, opener=lambda url: io.BytesIO(b"tampered"))
    assert not dest.exists() or not any(dest.rglob("*"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".toy.")]


def test_fetch_network_error_is_clear(tmp_path, monkeypatch):
    _fake_registry(monkeypatch, tmp_path)

    def boom(url):
        raise OSError("no route to host")

    with pytest.raises(UserError, match="cannot download .*no route to host"):
        registry.fetch("toy", tmp_path / "d", opener=boom)
