"""Pure decision logic over numpy arrays: objectives, constraints and ranking.

Nothing here reads files, clocks or networks. The planner builds a ``Candidates`` bundle
(offering x start-hour arrays), the constraints give a feasibility mask, and ``rank`` orders
the candidates under a ``Policy``.
"""
from carbonsched.policies.candidates import Candidates
from carbonsched.policies.constraints import Limits, feasibility, relaxation_gains
from carbonsched.policies.objectives import OBJECTIVES, TERMS, Policy
from carbonsched.policies.ranking import Ranking, rank

__all__ = ["Candidates", "Limits", "feasibility", "relaxation_gains", "Policy", "OBJECTIVES", "TERMS", "Ranking", "rank"]
