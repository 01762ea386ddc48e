"""Learning-rate diagnostics: the LR range test (API and script mode) and the runtime LR monitor."""

from looplint.lrfind.api import lr_find
from looplint.lrfind.result import GroupResult, LRFindResult

__all__ = ["GroupResult", "LRFindResult", "lr_find"]
