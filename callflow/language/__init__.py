"""The flow language: reading the YAML (with file:line:col for every mistake), the step kinds,
the policy proof, opening hours, the spoken texts, the JSON Schema, the diagrams, and the live
flow set that is swapped whole on reload."""
