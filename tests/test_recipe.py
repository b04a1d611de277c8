"""Recipe loading: strict keys, named errors with lines, and the shipped training recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.errors import RecipeError
from compress.recipe import TrainRecipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
GOOD = """\
version: 1
name: tiny
model:
  architecture: mobilepose
  arguments: {width: 0.5}
spec:
  input_size: [64, 64]
data:
  synthetic: {train: 4, val: 4, seed: 0}
train:
  epochs: 1
"""


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_shipped_training_recipes_load(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", TrainRecipe)
    assert recipe.name == name
    assert recipe.pose_spec(REPO / "recipes").input_size == (160, 128)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  arguments: {width: 0.5}",
            "  argumnets: {width: 0.5}",
            "recipe.yaml:5: unknown key 'model.argumnets'; did you mean 'arguments'? "
            "(allowed: architecture, arguments, checkpoint)",
        ),
        ("version: 1", "version: 2", "recipe.yaml:1: version: Input should be 1 (got 2)"),
        (
            "  epochs: 1",
            "  epochs: many",
            "recipe.yaml:11: train.epochs: Input should be a valid integer",
        ),
        (
            "  epochs: 1",
            "  epochs: 0",
            "recipe.yaml:11: train.epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        ("name: tiny", "name: ../escape", "recipe.yaml:2: name: String should match pattern"),
        ("name: tiny\n", "", "missing required key 'name'"),
        (
            "  synthetic: {train: 4, val: 4, seed: 0}",
            "  synthetic: {train: 4, val: 4, seed: 0}\n  coco: {root: /data}",
            "recipe.yaml:8: data: give exactly one of 'synthetic' or 'coco'",
        ),
        (
            "train:\n  epochs: 1\n",
            "trian:\n  epochs: 1\n",
            "unknown key 'trian'; did you mean 'train'?",
        ),
        (
            "  input_size: [64, 64]",
            "  input_size: [64]",
            "recipe.yaml:7: spec.input_size: too few items (nothing at position 1)",
        ),
        (
            "  arguments: {width: 0.5}",
            "  arguments: [0.5]",
            "model.arguments: Input should be a valid dictionary",
        ),
        (
            "  synthetic: {train: 4, val: 4, seed: 0}",
            "  synthetic: {train: 4, val: 4, seed: 0}\n  on_bad_sample: drop",
            "recipe.yaml:10: data.on_bad_sample: Input should be 'error' or 'skip' (got 'drop')",
        ),
    ],
)
def test_malformed_recipes_name_key_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, GOOD.replace(old, new)), TrainRecipe)
    assert message in str(info.value)


def test_yaml_syntax_and_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(
        RecipeError, match=r"recipe\.yaml: line 2 not valid YAML \(found character '\\t'"
    ):
        load_recipe(_write(tmp_path, "version: 1\n\tname: x\n"), TrainRecipe)
    with pytest.raises(RecipeError, match="a recipe is a YAML mapping of sections, got list"):
        load_recipe(_write(tmp_path, "- 1\n- 2\n"), TrainRecipe)
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "absent.yaml", TrainRecipe)
