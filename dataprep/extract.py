"""Text out of HTML (trafilatura), PDF (pypdf) and DOCX (python-docx) files.

The libraries are imported when first needed; a missing one raises MissingPackage naming the pip
package (llm_launch.launcher.data_sources checks this before the job reads anything, so users meet it as a
config error).
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from types import ModuleType


class MissingPackage(ImportError):
    """A reader's library is not installed."""


def require(module: str, package: str) -> ModuleType:
    """Import module or raise MissingPackage with a one-line fix."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{module} is not installed; pip install {package} (or pip install "
                             "'llm-launch[data]')") from None


def extract_html(data: bytes) -> str:
    """Main text of an HTML page (boilerplate such as navigation and footers removed)."""
    trafilatura = require("trafilatura", "trafilatura")
    return trafilatura.extract(data, include_comments=False, include_tables=True, favor_recall=True) or ""


def extract_pdf(data: bytes) -> str:
    """Text of every page of a PDF, pages separated by a blank line."""
    pypdf = require("pypdf", "pypdf")
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def extract_docx(data: bytes) -> str:
    """Paragraphs of a Word document, separated by a blank line (tables as tab-separated rows)."""
    docx = require("docx", "python-docx")
    document = docx.Document(io.BytesIO(data))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        parts.extend("\t".join(cell.text for cell in row.cells) for row in table.rows)
    return "\n\n".join(parts)


EXTRACTORS = {"html": extract_html, "pdf": extract_pdf, "docx": extract_docx}


def extract_file(path: Path, fmt: str) -> str:
    """Text of one HTML, PDF or DOCX file; raises on unreadable or corrupt files."""
    return EXTRACTORS[fmt](path.read_bytes())
