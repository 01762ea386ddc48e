"""Documentation of the static rules."""

from looplint.catalog import RuleInfo

RULES: tuple[RuleInfo, ...] = ()
