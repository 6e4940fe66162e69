"""Property-based (Hypothesis) tests of the parsers and checkers a user's bytes reach outside
the text readers (tests/test_user_text.py): config overrides (``section.key=value``), the
request fields and paths of ``xvit serve``, and the container checks of the video reader.
Each property: the input is read exactly, or refused with the project's one-line error;
never another exception, never a silent change. Bounded run time (``max_examples``, no
deadline: a loaded CI machine must not fail a property on time)."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import torch
from _video_fixtures import write_video
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvit.data.errors import VideoDecodeError
from xvit.data.video import read_frames
from xvit.engine.run.coerce import apply_overrides, default_config
from xvit.engine.run.schema import ConfigError, sections

KEYS = [
    f"{name}.{f.name}"
    for name, cls in sections().items()
    for f in dataclasses.fields(cls)
    if f.name != "overrides"
]
YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", ".nan", ".inf"}
# Text a user types after "=": YAML scalars and lists, numbers, words, odd characters.
VALUES = st.one_of(
    st.sampled_from(
        ["true", "no", "null", "~", "1e-3", "0.5", "-1", "007", "[1, 2]", "{a: 1}", "[]", "", " "]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
)


def _field_type(key: str) -> typing.Any:
    section, _, name = key.partition(".")
    return typing.get_type_hints(sections()[section])[name]


def _fits(value: typing.Any, tp: typing.Any) -> bool:
    """Whether ``value`` is an instance of the schema type ``tp`` (unions, lists, tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, origin) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), raw=VALUES)
def test_property_an_override_is_set_with_its_schema_type_or_refused(key, raw):
    base = default_config()
    try:
        cfg = apply_overrides(base, [f"{key}={raw}"])
    except ConfigError as e:
        assert "\n" not in str(e) and key.split(".")[1] in str(e)
        return
    section, _, name = key.partition(".")
    value = getattr(getattr(cfg, section), name)
    assert _fits(value, _field_type(key)), (key, raw, value)
    if (
        _field_type(key) is str
        and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", raw)
        and raw.lower() not in YAML_WORDS
    ):
        assert value == raw, (key, raw, value)  # text fields keep the text as written ("007" stays "007")


def test_an_override_keeps_text_as_written_and_refuses_a_wrong_type():
    cfg = apply_overrides(default_config(), ["train.out=007", "optim.lr=1e-3", "data.hflip=false"])
    assert (cfg.train.out, cfg.optim.lr, cfg.data.hflip) == ("007", 1e-3, False)
    with pytest.raises(ConfigError, match="optim.lr"):
        apply_overrides(default_config(), ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="data.num_frames"):
        apply_overrides(default_config(), ["data.num_frames=[8]"])


# ------------------------------------------------------------------ xvit serve's fields and paths

fastapi = pytest.importorskip("fastapi")
from xvit.engine.serve.upload import ApiError, parse_fields, resolve_allowed  # noqa: E402

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["timeline", "topk", "other"]),
        JSONISH | st.sampled_from(["true", "FALSE", " 1 ", "0", "3", " 7", "+2", "1_0", "٣", "9" * 5000]),
    ),
    max_topk=st.integers(1, 50),
)
def test_property_request_fields_are_read_exactly_or_400(fields, max_topk):
    try:
        timeline, topk = parse_fields(fields, max_topk)
    except ApiError as e:
        assert e.status == 400 and "\n" not in e.message
        return
    assert isinstance(timeline, bool) and 1 <= topk <= max_topk
    raw = fields.get("topk", 5)
    assert topk == int(str(raw).strip())
    if isinstance(fields.get("timeline"), str):
        assert timeline == (fields["timeline"].strip().lower() in ("true", "1"))


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    (root / "clips").mkdir()
    (root / "clips" / "a b é.mp4").write_bytes(b"x")
    (root / "top.mp4").write_bytes(b"x")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.mp4").write_bytes(b"x")
    (root / "link.mp4").symlink_to(outside / "secret.mp4")
    return root, outside


PATH_PARTS = st.sampled_from(
    ["clips", "a b é.mp4", "top.mp4", "link.mp4", "..", ".", "", "x" * 300, "\x00", "\ud800"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(PATH_PARTS | st.text(max_size=8), max_size=4), absolute=st.booleans())
def test_property_a_requested_path_is_a_file_inside_or_403_404(allowed, parts, absolute):
    root, outside = allowed
    requested = "/".join(parts)
    if absolute:
        requested = f"{root}/{requested}"
    try:
        got = resolve_allowed(requested, str(root))
    except ApiError as e:
        assert e.status in (403, 404) and "\n" not in e.message
        return
    assert got.is_file() and root.resolve() in got.parents
    assert outside not in got.parents


def test_a_long_or_unencodable_path_is_refused_not_500(allowed):
    root, _ = allowed
    for requested in ("x" * 5000, "clips/" + "y" * 300 + ".mp4", "\ud800.mp4", "clips/\udcff"):
        with pytest.raises(ApiError) as e:
            resolve_allowed(requested, str(root))
        assert e.value.status in (403, 404)


# ------------------------------------------------------------------ the video reader's checks


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    path = write_video(
        tmp_path_factory.mktemp("clip") / "clip.mp4", num_frames=12, height=32, width=48, fps=12
    )
    return path.read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(0, 100_000),
    flips=st.lists(st.tuples(st.integers(0, 100_000), st.integers(1, 255)), max_size=6),
    indices=st.lists(st.integers(0, 11), min_size=1, max_size=4),
)
def test_property_damaged_video_gives_its_frames_or_a_decode_error(
    tmp_path_factory, clip_bytes, cut, flips, indices
):
    """A real H.264 file, truncated and with bytes flipped (what a broken download or disk
    gives): the frames asked for, of the stated shape, or a VideoDecodeError naming the file."""
    data = bytearray(clip_bytes[: max(1, cut % (len(clip_bytes) + 1))])
    for at, xor in flips:
        data[at % len(data)] ^= xor
    path = tmp_path_factory.mktemp("damaged") / "damaged.mp4"
    path.write_bytes(bytes(data))
    try:
        frames = read_frames(path, indices)
    except VideoDecodeError as e:
        assert str(path) in str(e) and "\n" not in str(e).strip()
        return
    assert frames.dtype == torch.uint8 and frames.shape[0] == len(indices) and frames.shape[1] == 3
