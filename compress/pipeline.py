"""Recipes to results: the glue between recipe, data, models and stages."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

from compress import __version__, _dist
from compress._io import atomic_directory, json_safe, refuse_existing
from compress.data.coco import AugmentConfig, CocoPoseDataset
from compress.data.sources import cache_root, coco_splits, synthetic_splits
from compress.errors import CheckFailed, ModelError, RecipeError
from compress.models.bundle import Bundle, checkpoint_paths, load_bundle, load_state, save_bundle
from compress.models.zoo import SHIPPED, resolve_model
from compress.pose.spec import PoseSpec, coco17
from compress.recipe import (
    NetworkSection,
    Recipe,
    TrainRecipe,
    load_recipe,
    recipe_hash,
    resolve,
)
from compress.stages.base import StageContext, StageReport, measure, run_stage, summary
from compress.stages.configs import DistillSettings, FloatLayers
from compress.stages.train import seed_everything, train

DEFAULT_INPUT_SIZE = (160, 128)


def load_datasets(
    recipe: TrainRecipe | Recipe, base: Path, spec, seed: int, console: Console | None = None
):
    data = recipe.data
    if data.synthetic is not None:
        s = data.synthetic
        # Rank 0 generates (once, cached); the others wait, then everyone finds the same files.
        if _dist.is_main():
            synthetic_splits(s.train, s.val, s.seed, s.image_size)
        _dist.barrier()
        train_split, val_split = synthetic_splits(s.train, s.val, s.seed, s.image_size)
    else:
        c = data.coco
        train_split, val_split = coco_splits(resolve(base, c.root), c.train_split, c.val_split)
    policy = data.on_bad_sample
    datasets = (
        CocoPoseDataset(
            train_split, spec, augment=AugmentConfig(), seed=seed, on_bad_sample=policy
        ),
        CocoPoseDataset(val_split, spec, on_bad_sample=policy),
    )
    for dataset in datasets:
        left_out = dataset.bad_sample_summary()
        if left_out and console is not None and _dist.is_main():
            console.print(f"[yellow]warning:[/] {escape(left_out)}", soft_wrap=True)
    return datasets


def run_training(
    recipe_path: Path, out: Path | None, resume: bool, console: Console, force: bool = False
) -> Path | None:
    """Train as the recipe says; returns the best checkpoint's path (on rank 0)."""
    _dist.init_from_env()
    recipe = load_recipe(recipe_path, TrainRecipe)
    base = Path(recipe_path).resolve().parent
    spec = recipe.pose_spec(base)
    seed_everything(recipe.train.seed)  # before building: initial weights are part of the run
    if recipe.model.checkpoint is not None:
        bundle = load_bundle(resolve(base, recipe.model.checkpoint), spec)
    else:
        bundle = Bundle.build(recipe.model.architecture, spec, **recipe.model.arguments)
    bundle.provenance = {"recipe": str(recipe_path), "recipe_sha256": recipe_hash(recipe_path)}
    train_set, val_set = load_datasets(recipe, base, spec, recipe.train.seed, console)
    run_dir = out or Path("exported") / recipe.name
    _, report = train(
        bundle,
        recipe.train,
        train_set,
        val_set,
        run_dir,
        resume=resume,
        console=console,
        force=force,
    )
    if _dist.is_main():
        console.print(
            f"trained {recipe.name}: best AP {report.details['best_ap']:.4f} after "
            f"{report.details['epochs']} epochs ({report.seconds / 60:.1f} min)"
        )
        return run_dir / "best.json"
    return None


# ----- pocket run ------------------------------------------------------------------------------
def load_network(section: NetworkSection, base: Path, spec: PoseSpec | None, key: str) -> Bundle:
    """A recipe's network: shipped, a pocket checkpoint (both carry their own PoseSpec), or an
    architecture (+ weights) built on ``spec``."""
    if section.ref is not None:
        if section.ref in SHIPPED:
            return resolve_model(section.ref)
        path = resolve(base, Path(section.ref))
        _, config = checkpoint_paths(path)
        if not config.exists():
            raise RecipeError(
                f"{key}.ref: {section.ref!r} is neither a shipped network "
                f"({', '.join(SHIPPED)}) nor a checkpoint ({config} not found)"
            )
        return load_bundle(path)
    spec = spec or coco17(*DEFAULT_INPUT_SIZE)
    try:
        bundle = Bundle.build(section.architecture, spec, **section.arguments)
    except ModelError as exc:
        raise RecipeError(f"{key}.architecture: {exc}") from None
    if section.weights is not None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = resolve(base, section.weights)
        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            raise RecipeError(f"{key}.weights: {path} not found") from None
        except (SafetensorError, OSError) as exc:
            raise RecipeError(f"{key}.weights: {path} is not a safetensors file ({exc})") from None
        load_state(bundle.model, tensors, str(path))
    return bundle


def recipe_spec(recipe: Recipe, base: Path) -> PoseSpec | None:
    if recipe.spec is None:
        return None
    if recipe.spec.file is not None:
        return PoseSpec.load(resolve(base, recipe.spec.file))
    size = recipe.spec.input_size or DEFAULT_INPUT_SIZE
    return coco17(*size, heatmap_activation=recipe.spec.heatmap_activation)


@dataclasses.dataclass
class RunResult:
    out: Path
    bundle: Bundle
    reports: list[StageReport]


def prepare_run(recipe_path: Path) -> tuple[Recipe, Path, Bundle, Bundle | None]:
    """Load and check everything a run needs before any work: recipe, networks, data, layers."""
    recipe = load_recipe(recipe_path, Recipe)
    base = Path(recipe_path).resolve().parent
    spec = recipe_spec(recipe, base)
    networks = [n for n in (recipe.model.student, recipe.model.teacher) if n is not None]
    if spec is not None and all(n.architecture is None for n in networks):
        raise RecipeError(
            f"{recipe_path}: spec: applies to networks given by 'architecture'; shipped "
            "networks and checkpoints carry their own PoseSpec"
        )
    seed_everything(recipe.seed)  # before building: fresh initial weights are part of the run
    student = load_network(recipe.model.student, base, spec, f"{recipe_path}: model.student")
    teacher = None
    if recipe.model.teacher is not None:
        teacher = load_network(
            recipe.model.teacher, base, spec or student.spec, f"{recipe_path}: model.teacher"
        )
    check_references(recipe, base, student, teacher, Path(recipe_path))
    return recipe, base, student, teacher


def check_references(
    recipe: Recipe, base: Path, student: Bundle, teacher: Bundle | None, source: Path
) -> None:
    """Everything a run needs must exist before any work starts: the dataset, and the layer
    names, types and patterns the stages mention."""
    from compress.stages.distill import check_teacher, find_layers

    if teacher is not None:
        check_teacher(student.spec, teacher.spec)
    if recipe.data.coco is not None:
        c = recipe.data.coco
        coco_splits(resolve(base, c.root), c.train_split, c.val_split)

    def layers(model: Bundle | None, names: list[str], who: str, key: str) -> None:
        try:
            find_layers(model.model, names, who)
        except RecipeError as exc:
            raise RecipeError(f"{source}: {key}: {exc}") from None

    activation = str(student.spec.heatmap_activation)
    for i, stage in enumerate(recipe.stages):
        key = f"stages.{i}"
        for sub, settings in distill_settings(stage):
            if settings.loss == "kl" and activation != "softmax":
                raise RecipeError(
                    f"{source}: {key}{sub}.loss: 'kl' compares spatial softmax distributions; "
                    f"the student's heatmap_activation is {activation!r} (use 'mse' or 'auto')"
                )
            # Distillation learns from the teacher; fine-tuning and QAT from the network itself.
            other = teacher if stage.kind == "distill" else student
            pairs = settings.features
            layers(student, [f.student for f in pairs], "student", f"{key}{sub}.features")
            layers(other, [f.teacher for f in pairs], "teacher", f"{key}{sub}.features")
        if stage.kind == "prune":
            from compress.stages.prune import protected_names

            try:
                protected_names(student.model, stage.protect, stage.protect_patterns, "student")
            except RecipeError as exc:
                raise RecipeError(f"{source}: {key}.{str(exc).removeprefix('prune.')}") from None
        if stage.kind == "quantize" and stage.keep_float != FloatLayers():
            # Checked against the quantizer's own layer names (backbone.3:add, ...), exactly as
            # the stage will match them.
            from compress.stages.quantize import (
                base_quantizer,
                export_for_quantization,
                float_matcher,
                list_units,
            )

            quantizer = base_quantizer(stage.observer, stage.per_channel, qat=False)
            units = list_units(export_for_quantization(student.model, student.spec), quantizer)
            try:
                float_matcher(stage.keep_float, units)
            except RecipeError as exc:
                detail = str(exc).removeprefix("quantize.")
                raise RecipeError(f"{source}: {key}.{detail}") from None


def distill_settings(stage) -> list[tuple[str, DistillSettings]]:
    """(key suffix, settings) of every distillation a stage runs."""
    if stage.kind == "distill":
        return [("", stage)]
    if stage.kind == "prune" and stage.finetune.steps:
        return [(".finetune", stage.finetune)]
    if stage.kind == "quantize" and stage.qat is not None:
        return [(".qat", stage.qat)]
    return []


def run_recipe(
    recipe_path: Path, out: Path | None, force: bool, console: Console, use_cache: bool = True
) -> RunResult:
    """``pocket run``: every stage in order, then the run folder (written atomically).

    Finished distill and prune stages are cached by content (:mod:`compress.stages.cache`):
    a run that was interrupted, or repeated, resumes after the last finished stage."""
    from compress.stages.cache import CACHEABLE, StageCache, data_identity
    from compress.stages.distill import distill
    from compress.stages.prune import prune
    from compress.stages.quantize import quantize

    stage_functions = {"distill": distill, "prune": prune, "quantize": quantize}
    _dist.init_from_env()
    main = _dist.is_main()
    if not main:
        console = Console(quiet=True)
    recipe, base, bundle, teacher = prepare_run(recipe_path)
    out = Path(out) if out is not None else Path("exported") / recipe.name
    refuse_existing(out, force)  # fail before the work, not after it
    train_set, val_set = load_datasets(recipe, base, bundle.spec, recipe.seed, console)
    context = StageContext(train_set, val_set, out, teacher, recipe.seed, console)
    start = time.perf_counter()
    metrics = measure(bundle, val_set, context.eval_batch_size)
    console.print(f"{recipe.name}: start AP {metrics.ap:.4f}  PCK {metrics.pck:.4f}")
    first = summary(metrics)
    reports: list[StageReport] = []
    cache = StageCache(cache_root() / "stages") if use_cache else None
    data = data_identity(recipe.data, train_set, val_set) if use_cache else {}
    for i, stage in enumerate(recipe.stages, 1):
        console.rule(f"stage {i}/{len(recipe.stages)}: {stage.kind}")
        key = hit = None
        if cache is not None and stage.kind in CACHEABLE:
            uses_teacher = teacher if stage.kind == "distill" else None
            key = cache.key(stage, bundle, data, recipe.seed, uses_teacher)
            hit = cache.load(key, bundle.spec)
        if hit is not None:
            bundle, report = hit
            metrics = measure(bundle, val_set, context.eval_batch_size)
            console.print(f"{stage.kind}: reused the cached result ({key[:12]})")
        else:
            bundle, report, metrics = run_stage(
                stage.kind, stage_functions[stage.kind], bundle, stage, context, metrics
            )
            if key is not None and main:
                cache.store(key, bundle, report)
            _dist.barrier()
        reports.append(report)
        console.print(
            f"{stage.kind}: AP {report.metrics_before['ap']:.4f} -> "
            f"{report.metrics_after['ap']:.4f} "
            f"({100 * (report.metrics_after['ap'] - report.metrics_before['ap']):+.2f} points)  "
            f"MACs {report.macs_before / 1e9:.3f} -> {report.macs_after / 1e9:.3f} G  "
            f"({report.seconds:.0f} s)"
        )
    failures: dict[str, str] = {}
    failed_checks: list[str] = []
    if main:  # under torchrun only rank 0 writes
        failures, failed_checks = write_run_folder(
            out, force, recipe_path, recipe, bundle, first, reports, start, context, console
        )
    _dist.barrier()
    problems = [f"export failed for {target}" for target in failures] + failed_checks
    if problems:
        raise CheckFailed(
            f"{'; '.join(problems)} (the run folder is written: see {out}/report.json)"
        )
    return RunResult(out, bundle, reports)


def write_run_folder(
    out: Path,
    force: bool,
    recipe_path: Path,
    recipe: Recipe,
    bundle: Bundle,
    first: dict[str, float],
    reports: list[StageReport],
    start: float,
    context: StageContext,
    console: Console,
) -> tuple[dict[str, str], list[str]]:
    """The run folder, written whole or not at all; returns the export targets that failed
    (reasons in manifest.json) and the failed gates (in report.json)."""
    float_bundle = bundle
    if bundle.quantization is not None:
        float_bundle = dataclasses.replace(
            bundle, model=bundle.quantization.float_model, quantization=None
        )
    failures: dict[str, str] = {}
    verification: dict[str, Any] | None = None
    failed_checks: list[str] = []
    with atomic_directory(out, force=force) as work:
        save_bundle(float_bundle, work / "float")
        if recipe.export is not None:
            exported = export_run(work, recipe, recipe_path, float_bundle, bundle, context, console)
            failures = exported.failures
            if recipe.checks is not None and exported.artifacts:
                from compress.verify.artifacts import verify_run
                from compress.verify.gates import apply_gates

                console.rule("verify")
                verification = verify_run(
                    [(str(a.target), a.path) for a in exported.artifacts],
                    float_bundle.model,
                    context.val_set,
                    console,
                    recipe.checks.threads,
                    recipe.checks.latency_runs,
                )
                sizes = {str(a.target): a.bytes for a in exported.artifacts}
                failed_checks = apply_gates(verification, sizes, recipe.checks)
                for row in verification["artifacts"]:  # paths relative to the run folder
                    row["file"] = str(Path(row["file"]).relative_to(work))
                    row["bytes"] = sizes[row["target"]]
        report = {
            "recipe": str(recipe_path),
            "recipe_sha256": recipe_hash(recipe_path),
            "name": recipe.name,
            "seconds": time.perf_counter() - start,
            "start": first,
            "stages": [dataclasses.asdict(r) for r in reports],
            "export_failed": failures,
            "verification": verification,
            "checks_failed": failed_checks,
            "versions": versions(),
        }
        (work / "report.json").write_text(
            json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n"
        )
        from compress.report import write_reports
        from compress.report.schema import Report

        written = json.loads((work / "report.json").read_text())
        Report.model_validate(written)  # the documented schema; a mismatch is a bug here
        crops = None
        if verification is not None:
            from compress.report.overlays import crops_as_pixels
            from compress.verify.artifacts import EXAMPLES, parity_images

            crops = crops_as_pixels(parity_images(context.val_set, EXAMPLES), float_bundle.spec)
        write_reports(written, work, crops, float_bundle.spec)
    return failures, failed_checks


def export_run(
    work: Path,
    recipe: Recipe,
    recipe_path: Path,
    float_bundle: Bundle,
    bundle: Bundle,
    context: StageContext,
    console: Console,
):
    from compress.export import ExportContext, ExportOptions, parse_targets
    from compress.export.handoff import write_handoff
    from compress.export.metadata import pose_metadata
    from compress.export.run import export_targets, write_manifest
    from compress.stages.base import calibration_batches

    section = recipe.export
    sha = recipe_hash(recipe_path)
    if bundle.quantization is not None:
        calibration = bundle.quantization.calibration
    else:
        calibration = calibration_batches(context.train_set, 256, recipe.seed)
    export_context = ExportContext(
        float_bundle,
        pose_metadata(float_bundle, recipe.name, sha),
        bundle if bundle.quantization is not None else None,
        calibration,
        ExportOptions(
            nhwc=section.nhwc,
            int8_io=section.int8_io,
            onnx_opset=section.onnx_opset,
            coreml_target=section.coreml_target,
            coreml_image_input=section.coreml_image_input,
        ),
    )
    console.rule("export")
    result = export_targets(export_context, parse_targets(section.targets), work, console)
    write_manifest(result, work, {"name": recipe.name, "recipe_sha256": sha})
    write_handoff(work, float_bundle.spec, recipe.name, result.artifacts)
    return result


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {"pocket": __version__, "python": platform.python_version()}
    for package in ("torch", "torchao", "torch-pruning", "litert-torch", "onnx", "coremltools"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    found["torch_threads"] = torch.get_num_threads()
    return found
