"""The public data sets fairtrial knows by name: where they come from, what their files must hash
to, and where they are found on this machine.

registry.json (beside this file) lists every data set's files with upstream raw URLs (at the pinned
commit where the upstream README pins one) and sha256 digests, computed from unchanged copies.

  list_datasets()          the known names with descriptions and where each is found now
  fetch(name, dest=None)   download into the user data folder, verify every digest, return the folder
  resolve(name_or_path)    an existing path as is; a name looked up in FAIRTRIAL_DATA, then a
                           shared/data folder beside the project, then the user data folder
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Callable

from fairtrial.errors import UserError
from fairtrial.base.digests import sha256_file

ENV_MIRROR = "FAIRTRIAL_DATA"        # a local mirror laid out like shared/data
ENV_HOME = "FAIRTRIAL_DATA_HOME"     # where fetch writes (default ~/.cache/fairtrial/data)
CHUNK = 1 << 20


@lru_cache(maxsize=1)
def _registry() -> dict:
    return json.loads((Path(__file__).with_name("registry.json")).read_text(encoding="utf-8"))


def names() -> list[str]:
    return sorted(_registry())


def info(name: str) -> dict:
    reg = _registry()
    if name not in reg:
        from fairtrial.base.names import unknown_name

        raise UserError(unknown_name("data set", name, reg))
    return reg[name]


def data_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".cache" / "fairtrial" / "data").expanduser()


def _shared_candidates() -> list[Path]:
    """shared/data folders beside the project: walk up from the current directory and from this
    package, looking for ../shared/data (the layout of a checkout next to a shared folder)."""
    out: list[Path] = []
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            cand = d.parent / "shared" / "data"
            if cand.is_dir() and cand not in out:
                out.append(cand)
    return out


def _complete(folder: Path, name: str) -> bool:
    return folder.is_dir() and all((folder / f["path"]).is_file() for f in info(name)["files"])


def _locations(name: str) -> list[tuple[str, Path]]:
    locs = []
    if os.environ.get(ENV_MIRROR):
        locs.append((f"${ENV_MIRROR}", Path(os.environ[ENV_MIRROR]).expanduser() / name))
    locs += [("shared/data beside the project", c / name) for c in _shared_candidates()]
    locs.append(("user data folder", data_home() / name))
    return locs


def find(name: str) -> Path | None:
    """Where the data set `name` is complete on this machine, or None."""
    info(name)
    for _, p in _locations(name):
        if _complete(p, name):
            return p
    return None


def resolve(name_or_path: str | os.PathLike) -> Path:
    """An existing path as is; else a data set name found locally; else a UserError that says what
    was tried and how to get the data."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    name = str(name_or_path)
    if name not in _registry():
        raise UserError(f'"{name}" is neither an existing file or folder nor a known data set '
                        f'(known: {", ".join(names())}); check the path')
    found = find(name)
    if found is not None:
        return found
    tried = "\n".join(f"  {label}: {path}" for label, path in _locations(name))
    raise UserError(f'data set "{name}" is not on this machine; looked in\n{tried}\n'
                    f"get it with `fairtrial data fetch {name}`, or point {ENV_MIRROR} at a folder "
                    f"that holds {name}/")


def list_datasets() -> list[dict]:
    """One dict per known data set: name, description, licence, homepage, n_files, bytes, location
    (where it is found now, or None)."""
    out = []
    for n in names():
        d = info(n)
        loc = find(n)
        out.append({"name": n, "description": d["description"], "licence": d["licence"],
                    "homepage": d["homepage"], "n_files": len(d["files"]),
                    "bytes": sum(f["bytes"] for f in d["files"]),
                    "location": str(loc) if loc else None})
    return out


def fetch(name: str, dest: str | os.PathLike | None = None,
          opener: Callable[[str], object] | None = None,
          progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Download data set `name` into `dest` (default: the user data folder / name), verify every
    file's sha256, and return the folder. Files already present with the right digest are kept.

    Everything is downloaded into a temporary folder beside the destination and moved into place
    only when all digests match, so a failed fetch leaves nothing half-written. `opener(url)` must
    return a readable binary file object (default: urllib.request.urlopen)."""
    d = info(name)
    target = Path(dest).expanduser() if dest is not None else data_home() / name
    target.parent.mkdir(parents=True, exist_ok=True)
    opener = opener or (lambda url: urllib.request.urlopen(url, timeout=60))
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        for k, f in enumerate(d["files"]):
            final = target / f["path"]
            if final.is_file() and sha256_file(final) == f["sha256"]:
                continue
            part = tmp / f["path"]
            part.parent.mkdir(parents=True, exist_ok=True)
            try:
                with opener(f["url"]) as resp, open(part, "wb") as out:
                    shutil.copyfileobj(resp, out, CHUNK)
            except OSError as e:  # urllib's URLError and HTTPError are OSErrors
                raise UserError(f'cannot download {f["url"]} for data set "{name}": {e}. Check the '
                                f"network, or copy the files into {target} (or a folder named by "
                                f"{ENV_MIRROR})") from None
            got = sha256_file(part)
            if got != f["sha256"]:
                raise UserError(f'{f["url"]}: sha256 {got} does not match the registry\'s '
                                f'{f["sha256"]}; the upstream file changed or the download is '
                                f"corrupt. Nothing was written to {target}")
            if progress:
                progress(k + 1, len(d["files"]), f["path"])
        for part in sorted(p for p in tmp.rglob("*") if p.is_file()):
            final = target / part.relative_to(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
