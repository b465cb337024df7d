"""The ilm recipe's own command: `fairtrial infill`, mounted by the core CLI next to its commands
(see fairtrial.recipes.registry.command_apps).

A recipe never imports the application layer or the CLI: the CLI hands its commands what they
need as typer's `ctx.obj` (`fairtrial.cli.root.RecipeServices`): here `artifact_folder` (a stage
run resolved to its verified artifact folder), `print` and `emit_json`."""

from __future__ import annotations

from pathlib import Path

import typer

from fairtrial.errors import UserError

app = typer.Typer()


@app.command()
def infill(ctx: typer.Context,
           model_run: str = typer.Argument(..., help="A train stage-run key (prefix), "
                                                     "arm/seed/train with --study, or a model folder."),
           text: str = typer.Argument(..., help='Text with blanks: "She _ to school every _ ." '
                                                "(_ = word; \\[ngram], \\[sentence] typed blanks)."),
           study: str | None = typer.Option(None, "--study", "-s"),
           # the core commands' --workspace (fairtrial.cli.terminal.WorkspaceOpt), which a recipe
           # cannot import: the same option, the same environment variable
           workspace: Path | None = typer.Option(
               None, "--workspace", "-w", envvar="FAIRTRIAL_WORKSPACE",
               help="Workspace folder (default: .fairtrial in the current directory)."),
           n: int = typer.Option(1, "-n", help="How many samples."),
           temperature: float = typer.Option(0.8, help="0 = greedy."),
           top_p: float = typer.Option(0.95), top_k: int = typer.Option(0),
           max_new_tokens: int = typer.Option(64), seed: int = typer.Option(0),
           device: str = typer.Option("cpu"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Fill the blanks of a text with a trained infilling model (recipe ilm)."""
    from fairtrial.recipes.ilm.infill import infill_with_answers, resolve_model_dir

    services = ctx.obj  # fairtrial.cli.root.RecipeServices
    p = Path(model_run)
    folder = p if p.exists() else services.artifact_folder(model_run, study, workspace)
    if not (resolve_model_dir(folder) / "config.json").exists():
        raise UserError(f"{folder} holds no model (give a train stage run of recipe ilm)")
    try:
        out = infill_with_answers(folder, text, temperature=temperature, top_k=top_k, top_p=top_p,
                                  max_new_tokens=max_new_tokens, seed=seed, n=n, device=device)
    except ValueError as e:
        raise UserError(str(e)) from None
    if as_json:
        services.emit_json([{"text": t, "answers": a} for t, a in out])
        return
    for t, _ in out:
        services.print(t)
