"""Reports: terminal tables (rich), figures (matplotlib, imported lazily), HTML.

``report.figures``: every figure from a stored run (``run_figures``), each also on its own;
``report.html``: ``render_html`` / ``write_html`` / ``Report`` (one self-contained file);
``report.tables``: the check and run tables fitted to the terminal; ``report.summary``: the
verdict and the per-layer rows both share. Rendering only: the commands' bodies are in
:mod:`gradprobe.app`.
"""
