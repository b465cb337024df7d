"""Readers: the real corpora as found, and every kind of bad input with a located message."""

from pathlib import Path

import pytest

from fairtrial.data import read_cefr_sp, read_onestopenglish, read_table, read_text_folder
from fairtrial.data.readers import cefr_sp_level, read_efcamdat

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def test_cefr_sp_real_files_and_level_rules():
    docs = read_cefr_sp(DATA / "cefr-sp")
    assert len(docs) == 7453
    assert {d.level for d in docs} == {"A1", "A2", "B1", "B2", "C1", "C2"}
    assert len({d.id for d in docs}) == len(docs)
    disagree = [d for d in docs if d.meta["level_a"] != d.meta["level_b"]]
    assert disagree, "the two annotators disagree on some rows"
    assert cefr_sp_level(1, 2, "min") == "A1" and cefr_sp_level(1, 2, "max") == "A2"
    assert cefr_sp_level(1, 2, "mean") == "A2" and cefr_sp_level(2, 4, "mean") == "B1"
    assert cefr_sp_level(3, 5, "A") == "B1" and cefr_sp_level(3, 5, "B") == "C1"
    one = read_cefr_sp(DATA / "cefr-sp" / "wikiauto_dev.tsv", rule="A")
    assert len(one) == 701 and all(d.level == d.meta["level_a"] for d in one)


def test_onestop_real_folder():
    docs = read_onestopenglish(DATA / "onestopenglish")
    assert len(docs) == 567
    by_level = {lv: [d for d in docs if d.level == lv] for lv in ("Ele", "Int", "Adv")}
    assert all(len(v) == 189 for v in by_level.values())
    topics = {lv: {d.meta["topic"] for d in v} for lv, v in by_level.items()}
    assert topics["Ele"] == topics["Int"] == topics["Adv"]  # parallel corpus: same topic names
    assert not any(d.text.startswith("\ufeff") for d in docs)
    assert not any(d.text.split("\n")[0].strip() == "Intermediate" for d in docs)
    amazon = next(d for d in by_level["Int"] if d.meta["topic"] == "Amazon")
    assert "what’s" in amazon.text  # the intact nested copy wins over the ASCII-stripped one
    assert "Arctic mapping" in topics["Ele"]  # spaces in names


def test_onestop_stray_files_bom_title(tmp_path):
    for lv, suffix in (("Ele-Txt", "ele"), ("Adv-Txt", "adv")):
        (tmp_path / lv).mkdir()
        (tmp_path / lv / ".DS_Store").write_bytes(b"\x00\x01binary")
        (tmp_path / lv / f"My topic-{suffix}.txt").write_bytes(
            "\ufeffA short title\nFirst paragraph here.\nSecond one.\n".encode())
    docs = read_onestopenglish(tmp_path)
    assert len(docs) == 2
    assert docs[0].meta["title"] == "A short title" and docs[0].text.startswith("First")
    assert docs[0].meta["group"] == docs[1].meta["group"] == "My topic"


def test_onestop_non_utf8_without_valid_copy(tmp_path):
    (tmp_path / "Ele-Txt").mkdir()
    (tmp_path / "Ele-Txt" / "x-ele.txt").write_bytes(b"Fine line.\nThe animals\x92 call.\n")
    with pytest.raises(ValueError, match=r"x-ele.txt: line 2: not UTF-8 \(byte 0x92"):
        read_onestopenglish(tmp_path)


def test_table_formats_and_strata(tmp_path):
    csv = tmp_path / "e.csv"
    csv.write_text('writing_id,l1,cefr_level,text\n1,Arabic,A1,"Hello, world."\n2,German,B2,"Two\nlines"\n')
    docs = read_efcamdat(csv)
    assert [d.id for d in docs] == ["1", "2"] and docs[1].strata == {"l1": "German"}
    assert docs[1].text == "Two\nlines"
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"body": "a b", "lv": "easy"}\n{"body": "c d", "lv": "hard"}\n')
    assert [d.level for d in read_table(jl, "body", "lv")] == ["easy", "hard"]
    tsv = tmp_path / "x.tsv"
    tsv.write_text("text\tlevel\tsrc\nx y\tA\ts1\n")
    assert read_table(tsv, strata_columns=["src"])[0].strata == {"src": "s1"}


@pytest.mark.parametrize("content, match", [
    ("writing_id,l1,cefr_level\n1,Arabic,A1\n", r"missing column\(s\) 'text'"),
    ("writing_id,l1,text\n1,Arabic,hi\n", r"missing column\(s\) 'cefr_level'"),
    ("writing_id,l1,cefr_level,text\n1,Arabic,D1,hi\n", r'row 1: unknown level value .D1.'),
    ("writing_id,l1,cefr_level,text\n1,Arabic,A1,hi\n2,Arabic,A2,  \n", r"row 2: empty text"),
])
def test_table_bad_input(tmp_path, content, match):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        read_efcamdat(f)
    assert "bad.csv" in str(e.value)


def test_bad_bytes_and_bad_cefr_values(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_bytes(b"text,level\nok,A\ncaf\xe9,B\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3: not UTF-8"):
        read_table(f)
    t = tmp_path / "s.tsv"
    t.write_text("A sentence .\t1\t7\n")
    with pytest.raises(ValueError, match=r"s.tsv: line 1: unknown level values"):
        read_cefr_sp(t)
    t.write_text("Only two\t1\n")
    with pytest.raises(ValueError, match=r"line 1: expected 3 tab-separated columns"):
        read_cefr_sp(t)


def test_text_folder(tmp_path):
    for lv in ("easy", "hard"):
        (tmp_path / lv).mkdir()
        (tmp_path / lv / "a.txt").write_text(f"text at {lv}")
    docs = read_text_folder(tmp_path)
    assert [(d.id, d.level) for d in docs] == [("easy/a.txt", "easy"), ("hard/a.txt", "hard")]
    docs = read_text_folder(tmp_path, level_pattern=r"(?P<level>\w+)/a\.txt$")
    assert docs[0].level == "easy"
    with pytest.raises(ValueError, match="unknown level value 'hard'"):
        read_text_folder(tmp_path, levels=["easy"])
    (tmp_path / "easy" / "b.txt").write_text("   ")
    with pytest.raises(ValueError, match=r"b.txt: whole file: empty text"):
        read_text_folder(tmp_path)


def test_table_without_level_keeps_other_columns_and_numbers_rows_without_ids(tmp_path):
    """The options the lvm recipe reads CSV/JSONL with: no level column, other columns in meta,
    ids from the id column when the file has one, else "<file stem>:<row>"."""
    from fairtrial.data.readers import read_table

    f = tmp_path / "docs.csv"
    f.write_text("text,topic,n\nOne. Two.,t1,3\nThree.,t2,4\n")
    docs = read_table(f, level_column=None, id_column="id", id_optional=True, keep_columns=True)
    assert [(d.id, d.level, d.meta) for d in docs] == [
        ("docs:1", "", {"topic": "t1", "n": "3"}), ("docs:2", "", {"topic": "t2", "n": "4"})]
    with pytest.raises(ValueError, match="missing column"):
        read_table(f, level_column=None, id_column="id")  # an id column that must be there
    j = tmp_path / "docs.jsonl"
    j.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y", "level": "B1"}\n')
    docs = read_table(j, level_column=None, id_column="id", id_optional=True, keep_columns=True)
    assert [(d.id, d.meta) for d in docs] == [("a", {}), ("b", {"level": "B1"})]


def test_text_folder_without_levels(tmp_path):
    from fairtrial.data.readers import read_text_folder

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("\ufeffFirst.\r\nSecond.\n")
    (tmp_path / "sub" / "b.txt").write_text("Third.")
    docs = read_text_folder(tmp_path, level_pattern=None)
    assert [(d.id, d.level, d.text, d.meta["folder"]) for d in docs] == [
        ("a.txt", "", "First.\nSecond.", ""), ("sub/b.txt", "", "Third.", "sub")]
