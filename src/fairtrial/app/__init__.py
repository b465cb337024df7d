"""The application layer: one module per use case a person has. The CLI and the dashboard call
only this layer and render what it returns; it calls spec, plan, engine, store and analysis, and
knows nothing of terminals or HTTP (docs/architecture.md).

resolve    the workspace and its record store, a study, a stage run and its artifact folder
check      validate and plan a study file
run        run in the foreground, detached, resume; stop
status     status as the CLI shows it and as machines poll it
logs       a stage run's log
report     analyse and write the report
imports    item scores from elsewhere as an external arm
dashboard  the dashboard's read models
datasets, recipes, versions   the data sets, the recipes (and their commands), the versions

Keep this file empty of imports: `fairtrial status --json` imports app.status on its fast path."""
