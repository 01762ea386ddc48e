"""The ways in: each receives text its own way, calls the one engine, and shows the findings.

- `cli`: `looplint PATH...`, `looplint rule`, and the door to `looplint run`;
- `pytest_plugin`: `pytest --looplint` and the `loop_hygiene` marker.
"""
