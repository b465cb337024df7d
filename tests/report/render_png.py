"""Render the example reports to HTML and, with headless Chromium, to PNG for a visual check.

    .venv/bin/python tests/report/render_png.py [out_dir]      (default: /tmp/fairtrial-report)

Needs /usr/bin/chromium (Debian: apt-get install -y chromium). Without it only the HTML is written.
test_report_render.py runs the same function and is skipped when no chromium binary exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report_examples  # noqa: E402

from fairtrial.report import render_html  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def screenshot(html_path: Path, png_path: Path, height: int = 3000, timeout: float = 120) -> Path:
    """PNG of an HTML file, 1200 px wide, with headless Chromium and no network use."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={png_path}",
               f"--window-size=1200,{height}", html_path.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {png_path}")
    return png_path


def main(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, build in (("cefr", report_examples.cefr_cross_eval),
                        ("scaling", report_examples.lvm_scaling),
                        ("toolcall", report_examples.toolcall_tree)):
        html_path = out / f"{name}.html"
        html_path.write_text(render_html(build()), encoding="utf-8")
        made.append(html_path)
        if Path(CHROMIUM).exists():
            made.append(screenshot(html_path, out / f"{name}.png"))
    return made


if __name__ == "__main__":
    for p in main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fairtrial-report")):
        print(p)
