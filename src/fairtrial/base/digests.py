"""Content digests of input files and folders, cached by (path, size, mtime) so planning a study
over a large data set does not re-hash it every time."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest_of(obj) -> str:
    """sha256 of the canonical JSON of `obj` (cache keys, import keys, input digests)."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    def __init__(self, file: Path | None):
        self.file = file
        self.data: dict[str, list] = {}
        if file and file.exists():
            try:
                self.data = json.loads(file.read_text())
            except (OSError, ValueError):
                self.data = {}
        self.dirty = False

    def file_digest(self, path: Path) -> str:
        st = path.stat()
        k = str(path.resolve())
        hit = self.data.get(k)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        d = sha256_file(path)
        self.data[k] = [st.st_size, st.st_mtime_ns, d]
        self.dirty = True
        return d

    def __call__(self, path: Path) -> str:
        """Digest of a file, or of a folder (sorted relative paths and their file digests;
        hidden files such as .DS_Store are skipped)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(path)
        if path.is_file():
            return self.file_digest(path)
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if f.startswith("."):
                    continue
                p = Path(root) / f
                h.update(str(p.relative_to(path)).encode() + b"\0")
                h.update(self.file_digest(p).encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.file and self.dirty:
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            os.replace(tmp, self.file)
            self.dirty = False
