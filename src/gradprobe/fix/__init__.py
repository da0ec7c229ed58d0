"""Remedies applied to copies of a model and proven there.

Today: :func:`try_remedies` re-checks copies re-initialised with each candidate scheme at
initialisation and ranks them by a health score (:mod:`gradprobe.fix.ranking`). The user's
model is never modified. Training-based trials (``gp.fix``) will live here too.
"""

from __future__ import annotations

from .ranking import CANDIDATES, Candidate, Ranking, score, try_remedies

__all__ = ["CANDIDATES", "Candidate", "Ranking", "score", "try_remedies"]
