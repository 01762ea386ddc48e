"""Documentation of the learning-rate diagnostics (LL506, LL507)."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = ()
