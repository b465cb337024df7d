import base64
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import render_png  # noqa: E402
import report_examples  # noqa: E402

from fairtrial.report import render_html, render_markdown  # noqa: E402


@pytest.fixture(scope="module")
def cefr():
    return report_examples.cefr_cross_eval()


def _pngs(html):
    return re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)


def test_html_is_self_contained_with_sections_and_images(cefr):
    html = render_html(cefr)
    for section in ("Integrity checks", "Comparisons", "Arms", "Secondary metrics",
                    "Cross-evaluation matrix", "Specialisation gain", "Off-diagonal cost", "Provenance"):
        assert f">{section}" in html, section
    imgs = _pngs(html)
    assert len(imgs) == 3          # forest plot, endpoint per arm, cross-evaluation heatmap
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    # no network: nothing fetched from outside the file
    assert not re.search(r"(src|href)=['\"]https?:", html)
    assert "<style>" in html
    # the first paragraph is the headline: the question and the verdict
    first = re.search(r"<p class='headline[^']*'>(.*?)</p>", html).group(1)
    assert first.startswith("Does an ILM trained on one CEFR level")
    assert cefr.verdict.capitalize() in first and "CI" in first


def test_markdown_first_line_and_tables(cefr):
    md = render_markdown(cefr)
    first = md.splitlines()[0]
    assert first == cefr.headline
    assert "CI" in first and "%" in first
    assert "| A1-specialist | general | A1 | 4 x 150 |" in md
    assert "config_drift" in md and "## Provenance" in md
    assert "| general | 0.066 | 0 | 118 |" in md


def test_partial_report_says_so():
    r = report_examples.cefr_cross_eval(complete=False)
    md = render_markdown(r)
    assert md.startswith("PARTIAL REPORT, study incomplete (30 of 48 stage runs done)")
    assert "incomplete (done: 30, total: 48, running: 2)" in md
    assert "class='partial'" in render_html(r)


def test_scaling_and_tree_sections():
    s = render_html(report_examples.lvm_scaling())
    assert ">Data scaling" in s and ">Learning-curve fit" in s and len(_pngs(s)) == 3
    t = render_markdown(report_examples.toolcall_tree())
    assert "## Decision tree over endpoints" in t and "## Pairwise judgements" in t
    assert "| small+prefix | partial | json_valid |" in t


@pytest.mark.skipif(not Path(render_png.CHROMIUM).exists(), reason="no chromium binary")
def test_chromium_renders_the_report(tmp_path, cefr):
    page = tmp_path / "report.html"
    page.write_text(render_html(cefr), encoding="utf-8")
    png = render_png.screenshot(page, tmp_path / "report.png", height=1600)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1200, 1600)
        # a rendered page is not blank: many distinct colours (tables, plot, headline bar)
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_done_when_known_effect_to_verdict_to_html():
    # arm is 0.5 better on a mean of 10 (+5%), margin 2%: supported, interval covering +5%
    from fairtrial.analysis import Decision, Endpoint, StudyDesign, analyze
    from fairtrial.analysis.synthetic import make_scores

    df = make_scores({"ctrl": 0.0, "arm": 0.5}, n_items=300, mean=10.0, seed_sd=0.02,
                     baselines={"majority": -3.0})
    d = StudyDesign(question="Does arm beat ctrl by 2% or more?", arms={"ctrl": {}, "arm": {}},
                    control="ctrl", endpoint=Endpoint("score", "higher"),
                    decision=Decision(min_effect=0.02))
    r = analyze(df, d, n_resamples=2000)
    c = r.comparisons[0]
    assert r.verdict == "supported" and c.rel_ci[0] <= 0.05 <= c.rel_ci[1]
    html = render_html(r)
    for section in ("Integrity checks", "Comparisons", "Arms", "Models against their trivial baselines",
                    "Provenance"):
        assert f">{section}" in html
    assert len(_pngs(html)) == 2          # forest plot, endpoint per arm
    assert "Supported: arm vs ctrl on test: score improved by +" in html
