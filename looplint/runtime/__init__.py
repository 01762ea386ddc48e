"""Runtime diagnostics: instrument a real training loop and report what actually happened."""

from looplint.runtime.session import RuntimeFindingsError, RuntimeReport, Watch, watch

__all__ = ["RuntimeFindingsError", "RuntimeReport", "Watch", "watch"]
