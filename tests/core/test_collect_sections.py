"""collect._report_sections: a section every arm gives alike is shown once, first; the others
under their arm's name (curate's funnel once, each arm's merge check apart)."""

from __future__ import annotations

from types import SimpleNamespace

from fairtrial.collect import _report_sections


def test_shared_sections_once_the_rest_per_arm(tmp_path):
    funnel = {"title": "Curation funnel", "text": "the same for every arm"}

    def hook(paths, params):
        return [funnel, {"title": "Merge check", "text": f"arm {params['name']}"}]

    spec = SimpleNamespace(
        recipe=SimpleNamespace(report_sections=hook), replicates=[0, 1],
        arms=[SimpleNamespace(name=a, params={"name": a}) for a in ("a", "b")])
    ws = SimpleNamespace(artifact=lambda key: tmp_path / key)
    cells = [{"arm": a, "replicate": 0, "stage": "merge", "key": f"k{a}"} for a in ("a", "b")]
    got = _report_sections(ws, spec, cells, {"ka": {"m": 1}, "kb": {"m": 1}})
    assert [s["title"] for s in got] == ["Curation funnel", "a: Merge check", "b: Merge check"]
    assert got[1]["text"] == "arm a"
    # every section alike: all shown once, no arm names
    same = SimpleNamespace(**{**vars(spec), "recipe": SimpleNamespace(
        report_sections=lambda paths, params: [funnel])})
    assert _report_sections(ws, same, cells, {"ka": {"m": 1}, "kb": {"m": 1}}) == [funnel]
