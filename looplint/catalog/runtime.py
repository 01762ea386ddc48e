"""Documentation of the codes only the runtime hook reports (LL5xx)."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = ()
