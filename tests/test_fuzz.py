"""Fuzzing: mutated recipes and annotation files give only the documented errors.

Hypothesis mutates valid inputs (keys dropped, renamed or retyped, values replaced by other
types, lists emptied or nested) and every outcome must be success or a RecipeError/DataError,
never another exception.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.data.coco import CocoPoseDataset, locate_split
from compress.errors import DataError, RecipeError
from compress.pose.spec import coco17
from compress.recipe import Recipe, TrainRecipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, (*prefix, i))
    return found


def _mutate(data: Any, draw) -> Any:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "wrap"]))
        if action == "delete":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(ODD_VALUES)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = parent.pop(last)
        else:
            parent[last] = [parent[last]]
    return data


RECIPES = [
    (REPO / "recipes" / "pose-mobile.yaml", Recipe),
    (REPO / "recipes" / "pose-qat.yaml", Recipe),
    (REPO / "recipes" / "student.yaml", TrainRecipe),
]


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_recipes_give_recipe_errors_only(data, tmp_path_factory) -> None:
    source, model = data.draw(st.sampled_from(RECIPES))
    mutated = _mutate(yaml.safe_load(source.read_text()), data.draw)
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(yaml.safe_dump(mutated))
    try:
        load_recipe(path, model)
    except RecipeError as exc:
        assert str(exc).startswith(str(path)), str(exc)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_annotation_files_give_data_errors_only(
    data, synthetic_root: Path, tmp_path_factory
) -> None:
    original = json.loads(locate_split(synthetic_root, "val").annotation_file.read_text())
    small = {
        "images": original["images"][:3],
        "annotations": [a for a in original["annotations"]
                        if a["image_id"] in {i["id"] for i in original["images"][:3]}],
        "categories": original["categories"],
    }  # fmt: skip
    mutated = _mutate(small, data.draw)
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    (root / "annotations" / "person_keypoints_val.json").write_text(json.dumps(mutated))
    (root / "val").symlink_to(synthetic_root / "images" / "val", target_is_directory=True)
    try:
        dataset = CocoPoseDataset.from_folder(root, "val", coco17(64, 64))
        for i in range(min(2, len(dataset))):
            dataset[i]
    except DataError:
        pass
