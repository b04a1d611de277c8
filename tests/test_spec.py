from __future__ import annotations

import pytest

from compress.errors import DataError, RecipeError
from compress.pose.spec import (
    COCO17_KEYPOINTS,
    Decoder,
    Layout,
    Normalization,
    PoseSpec,
    coco17,
    make_spec,
)


def test_coco17_matches_the_coco_definition(spec: PoseSpec) -> None:
    assert spec.keypoints == COCO17_KEYPOINTS
    assert spec.num_keypoints == 17
    assert spec.keypoints[0] == "nose" and spec.keypoints[-1] == "right_ankle"
    assert spec.oks_sigmas[0] == pytest.approx(0.026)
    assert spec.oks_sigmas[11] == pytest.approx(0.107)
    assert len(spec.skeleton) == 19
    # COCO's 1-based skeleton as it appears in person_keypoints_*.json
    category = spec.to_coco_category()
    assert category["skeleton"][0] == [16, 14]
    assert category["skeleton"][-1] == [5, 7]
    assert spec.heatmap_size == (64, 48)


def test_flip_permutation_swaps_each_pair(spec: PoseSpec) -> None:
    perm = spec.flip_permutation
    assert perm[spec.index("nose")] == spec.index("nose")
    for left, right in spec.flip_pairs:
        assert perm[spec.index(left)] == spec.index(right)
        assert perm[spec.index(right)] == spec.index(left)
    assert sorted(perm) == list(range(17))


def test_json_round_trip_is_lossless(spec: PoseSpec) -> None:
    custom = coco17(
        320,
        224,
        normalization=Normalization.scale(255.0),
        layout=Layout.NHWC,
        decoder=Decoder.QUARTER_OFFSET,
        heatmap_sigma=2.5,
    )
    for original in (spec, custom):
        again = PoseSpec.from_json(original.to_json())
        assert again == original
        assert again.to_json() == original.to_json()
        assert again.flip_permutation == original.flip_permutation


def test_other_keypoint_sets_use_the_same_class() -> None:
    hand = PoseSpec(
        name="three-points",
        keypoints=("a", "b", "c"),
        flip_pairs=(("a", "c"),),
        skeleton=(("a", "b"), ("b", "c")),
        oks_sigmas=(0.05, 0.05, 0.05),
        input_height=64,
        input_width=64,
    )
    assert hand.flip_permutation == (2, 1, 0)
    assert hand.limb_indices == ((0, 1), (1, 2))  # PCP falls back to the skeleton
    assert hand.torso_indices is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"oks_sigmas": (0.1,) * 16}, "oks_sigmas has 16 values for 17 keypoints"),
        ({"skeleton": (("nose", "tail"),)}, "names unknown keypoints ['tail']"),
        (
            {"flip_pairs": (("left_eye", "right_eye"), ("left_eye", "left_ear"))},
            "more than one flip pair",
        ),
        ({"input_height": 250}, "input_height=250 is not a multiple of heatmap_stride=4"),
        ({"decoder": "argmax"}, "decoder"),
        ({"colour": "rgb"}, "colour"),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        coco17(**overrides)
    assert message in str(info.value)


def test_bad_json_is_a_data_error_naming_the_source() -> None:
    with pytest.raises(DataError, match=r"my_spec\.json: not a valid PoseSpec"):
        PoseSpec.from_json('{"name": "x"}', source="my_spec.json")


def test_make_spec_rejects_duplicate_names() -> None:
    with pytest.raises(RecipeError, match="repeated"):
        make_spec(
            name="d", keypoints=("a", "a"), oks_sigmas=(0.1, 0.1), input_height=8, input_width=8
        )
