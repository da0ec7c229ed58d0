"""Reports: terminal tables (rich), figures (matplotlib, imported lazily), HTML."""
