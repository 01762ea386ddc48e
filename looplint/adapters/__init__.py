"""The ways in: each receives text its own way, calls the one engine, and shows the findings.

- `cli`: `looplint PATH...`, `looplint rule`, and the doors to `looplint run` and `looplint server`;
- `pytest_plugin`: `pytest --looplint` and the `loop_hygiene` marker;
- `server`: `looplint server`, the language server for editors (`lsp_edits`: its positions, fixes,
  `# noqa` edits and rule pages);
- `ipython`: `%load_ext looplint`, each cell checked before it runs;
- `flake8_plugin`: `flake8 --select LL`.
"""

from __future__ import annotations


def server_main(argv: list[str]) -> int:
    """`looplint server`: imported only when asked for, so the command line stays light."""
    from looplint.adapters.server import main

    return main(argv)
