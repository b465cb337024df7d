"""The application layer: one module per use case a person has. The CLI and the dashboard call
only this layer and render what it returns; it calls spec, plan, engine, store and analysis, and
knows nothing of terminals or HTTP (docs/architecture.md). Most use cases still live in
fairtrial.study, which moves here module by module.

Keep this file empty of imports: `fairtrial status --json` imports app.status on its fast path."""
