"""Every reader, on small fixtures made here; bad input is counted with examples, never fatal."""

from pathlib import Path

from llm_launch.dataprep.process import process_items
from llm_launch.dataprep.read import iter_items
from llm_launch.launcher.config.schema import DataFilterConfig, DataSourceConfig, DedupConfig
from llm_launch.launcher.jsonl import Tally
from pipeline_helpers import chapters

VERSES = chapters(1)[0].split("\n")[:6]


def read(fmt: str, path: Path, **fields) -> tuple[list[str], Tally]:
    """Texts kept from one source and the tally of everything bad (reader and worker)."""
    tally = Tally()
    source = DataSourceConfig(name="s", path=str(path), format=fmt, **fields)
    texts = []
    for result in process_items(iter_items(0, source, tally), DataFilterConfig(min_words=1),
                                DedupConfig(near=False), workers=1):
        if result.bad:
            tally.add(result.bad, result.where, result.detail)
        elif result.units:
            texts.append(result.units[0].text)
    return texts, tally


def test_jsonl_reads_records_and_counts_every_kind_of_bad_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([
        b'{"text": "good one", "url": "http://a.org"}',
        b'{"text": "unterminated',
        b'["a", "list"]',
        b'{"body": "no text field"}',
        b'{"text": 42}',
        b'{"text": "bad \xff\xfe bytes"}',
        b'{"text": "  \\u0000 \\t "}',
        b"",
        b'{"text": "good two"}',
    ]) + b"\n")
    texts, tally = read("jsonl", path)
    assert texts == ["good one", "good two"]
    assert tally.counts == {"malformed_json": 2, "missing_text_field": 1, "non_string_text": 1,
                            "undecodable_bytes": 1, "empty_document": 1}
    assert tally.examples["malformed_json"][0]["where"] == f"{path}:2"
    assert tally.examples["malformed_json"][0]["detail"] == "Invalid control character at column 23"  # "at" once
    assert tally.examples["undecodable_bytes"][0]["where"] == f"{path}:6"


def test_parquet_reads_the_text_column_and_counts_a_file_without_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": VERSES[:3], "n": [1, 2, 3]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"other": ["x", "y"]}), tmp_path / "b.parquet")
    texts, tally = read("parquet", tmp_path, text_field="content")
    assert texts == VERSES[:3]
    assert tally.counts == {"missing_text_field": 2}


def test_html_main_text_is_extracted_without_boilerplate(tmp_path):
    body = "".join(f"<p>{v}</p>" for v in VERSES)
    page = (f"<html><head><title>Genesis</title></head><body><nav><a href='/'>Home</a> | <a href='/x'>Login</a>"
            f"</nav><article><h1>Genesis 1</h1>{body}</article><footer>Copyright footer text</footer></body></html>")
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    (texts, tally) = read("html", tmp_path)
    assert len(texts) == 1 and not tally.counts
    for verse in VERSES:
        assert verse in texts[0]
    assert "Login" not in texts[0]


def test_pdf_text_is_extracted_and_a_corrupt_pdf_is_counted(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    for verse in VERSES[:3]:
        pdf.multi_cell(0, 6, verse, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "a.pdf"))
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    texts, tally = read("pdf", tmp_path)
    assert len(texts) == 1
    assert " ".join(texts[0].split()).startswith(" ".join(VERSES[0].split()[:8]))
    assert tally.counts == {"unreadable_file": 1}
    assert tally.examples["unreadable_file"][0]["where"].endswith("b.pdf")


def test_docx_paragraphs_and_tables_are_extracted(tmp_path):
    import docx

    document = docx.Document()
    for verse in VERSES[:3]:
        document.add_paragraph(verse)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Book", "Genesis"
    document.save(tmp_path / "a.docx")
    (tmp_path / "b.docx").write_bytes(b"PK not a zip")
    texts, tally = read("docx", tmp_path)
    assert texts == ["\n\n".join(VERSES[:3]) + "\n\nBook Genesis"]
    assert tally.counts == {"unreadable_file": 1}


def test_text_files_missing_paths_and_undecodable_files_are_counted(tmp_path):
    (tmp_path / "a.txt").write_text(VERSES[0], encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9 latin-1")
    texts, tally = read("text", tmp_path)
    assert texts == [VERSES[0]]
    assert tally.counts == {"undecodable_bytes": 1}
    _, missing = read("jsonl", tmp_path / "nowhere.jsonl")
    assert missing.counts == {"unreadable_file": 1}
