"""Rendering of analysis results: Markdown, self-contained HTML, and plots. Computes nothing new."""

from fairtrial.report.html import render_html
from fairtrial.report.markdown import render_markdown

__all__ = ["render_markdown", "render_html"]
