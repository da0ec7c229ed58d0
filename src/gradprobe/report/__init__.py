"""Reports: terminal tables (rich), figures (matplotlib, imported lazily), HTML.

``report.figures``: every figure from a stored run (``run_figures``), each also on its own;
``report.html``: ``render_html`` / ``write_html`` / ``Report`` (one self-contained file);
``report.run_report``: ``gradprobe report RUN``; ``report.demo``: ``gradprobe demo``.
"""
