"""The one engine every way in uses: files -> analysis -> findings -> noqa/config -> report.

- `files`: which files a run lints (the walk, .gitignore, excludes);
- `lint`: read and decode them, analyze, apply `# noqa` and the configuration, cache, workers;
- `config`, `suppress`, `cache`: `[tool.looplint]`, `# noqa`, and per-file results on disk;
- `notebook`: `.ipynb` files as one program, findings placed back in their cells;
- `fixer`: safe autofixes, verified before anything is written;
- `report`: text, JSON, SARIF and GitHub output.

The adapters (`looplint.adapters`: the command line, the pytest plugin, the editor's language
server, the IPython extension, the flake8 plugin) only differ in how they receive text and show
findings.
"""

from looplint.engine.lint import (
    FileError,
    LintResult,
    decode_source,
    default_jobs,
    lint_bytes,
    lint_file,
    lint_paths,
    lint_text,
    notebooks_supported,
    project_for,
    read_bytes,
    sort_key,
)

__all__ = [
    "FileError",
    "LintResult",
    "decode_source",
    "default_jobs",
    "lint_bytes",
    "lint_file",
    "lint_paths",
    "lint_text",
    "notebooks_supported",
    "project_for",
    "read_bytes",
    "sort_key",
]
