"""The behaviour model file: ONE ``.npz`` (``np.savez_compressed``) of plain numeric arrays and a JSON
header, read back with ``allow_pickle=False``.

Members: ``header`` (the UTF-8 JSON as uint8), ``profile.centre|spread|count|updated``, ``log1p``,
``reference.<scorer>``, ``calibration.x|y`` and the scorer's arrays (``sp.*``, ``if.*`` or ``ae.*``). The header:
``{"format": "vmsentry-behaviour-model", "version": 1, "vmsentry", "created", "trained_on": [{"file",
"sha256", "frames", "first", "last"}], "window", "features", "entities", "scorer", "scorers", "choice",
"calibration", "thresholds", "profiles", "trained"}``.

Reading is bounded before anything is decompressed: the file at most ``MAX_FILE_BYTES``; the members'
declared sizes (the zip directory) at most ``MAX_UNPACKED_BYTES`` together; each member's .npy header
read first, refused when it holds Python objects (nothing is unpickled) or declares a shape its size
cannot hold. Every problem is a ``ModelFileError``: one line naming the file and the problem.
Writing goes through model/atomic_file.py: the old file stays whole until the new one is complete, and a
symbolic link at the path is replaced, never followed.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from vmsentry.analyse.behaviour.calibrate import Calibration
from vmsentry.analyse.behaviour.model import SCORERS, BehaviourModel, ZMax
from vmsentry.analyse.behaviour.profile import Profiles
from vmsentry.model.atomic_file import replace_file
from vmsentry.model.files import MIB, BadInput, parse_json, read_bounded

FORMAT = "vmsentry-behaviour-model"
VERSION = 1
MAX_FILE_BYTES = 256 * MIB
MAX_UNPACKED_BYTES = 256 * MIB
MAX_MEMBERS = 256
_NPY_HEADER_BYTES = 65536  # numpy's own limit on a .npy header (max_header_size default is 10,000)


class ModelFileError(Exception):
    """A model file that cannot be written or used: ``str(exc)`` is "<file>: <problem>", one line."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _header(model: BehaviourModel, trained_on: Sequence[dict]) -> dict:
    from vmsentry import __version__

    calibration = None
    if model.calibration is not None:
        calibration = {**model.calibration.describe(), **model.calibration_report}
    return {
        "format": FORMAT,
        "version": VERSION,
        "vmsentry": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "trained_on": list(trained_on),
        "window": model.window,
        "features": model.names,
        "entities": model.trained.get("entities", []),
        "scorer": model.scorer,
        "scorers": sorted(model.scorers),
        "choice": model.choice,
        "calibration": calibration,
        "thresholds": model.thresholds(),
        "profiles": {
            "keys": model.profiles.keys,
            "min_samples": model.profiles.min_samples,
            "floor": model.profiles.floor,
        },
        "trained": {k: v for k, v in model.trained.items() if k != "entities"},
    }


def save(model: BehaviourModel, path: str, trained_on: Sequence[dict] = ()) -> dict:
    """Write ``model`` to ``path`` (all or nothing). ``trained_on``: what it was trained on, one dict per
    capture ({"file", "sha256", "frames", "first", "last"}). Returns the header written."""
    header = _header(model, trained_on)
    arrays = {
        "header": np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "profile.centre": model.profiles.centre,
        "profile.spread": model.profiles.spread,
        "profile.count": model.profiles.count,
        "profile.updated": model.profiles.updated,
        "log1p": np.asarray(model.log1p, dtype=np.uint8),
    }
    for name, scorer in model.scorers.items():
        arrays.update(scorer.arrays())
        arrays[f"reference.{name}"] = model.reference[name]
    if model.calibration is not None:
        arrays["calibration.x"] = model.calibration.x
        arrays["calibration.y"] = model.calibration.y
    try:
        replace_file(path, lambda fh: np.savez_compressed(fh, **arrays))
    except OSError as exc:
        raise ModelFileError(path, f"cannot write: {exc.strerror or type(exc).__name__}") from None
    return header


# -- reading ---------------------------------------------------------------------------------------------


def _check_members(archive: zipfile.ZipFile) -> None:
    """Refuse, from the zip directory alone, what would be too big or is not a .npy member."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"{len(infos)} members (at most {MAX_MEMBERS}); not a behaviour model")
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise ValueError(f"member {info.filename!r} is not a .npy array; not a behaviour model")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise ValueError(
                f"members declare {total / MIB:.0f} MiB or more unpacked, over the {MAX_UNPACKED_BYTES // MIB} MiB limit; not read"
            )
    for info in infos:
        with archive.open(info) as member:
            head = member.read(min(info.file_size, _NPY_HEADER_BYTES))
        _check_npy_header(info, head)


def _check_npy_header(info: zipfile.ZipInfo, head: bytes) -> None:
    name = info.filename[: -len(".npy")]
    stream = io.BytesIO(head)
    try:
        major, _minor = np.lib.format.read_magic(stream)
        if major == 1:
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif major in (2, 3):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy version {major}")
    except ValueError as exc:
        raise ValueError(f"member {name!r}: not a readable array ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"member {name!r} holds Python objects; refused (never unpickled)")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if stream.tell() + count * dtype.itemsize != info.file_size:
        raise ValueError(f"member {name!r}: its shape {shape} does not match its size")


def _read_archive(path: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        if data.startswith(b"PK\x03\x04"):
            raise ModelFileError(path, "truncated or corrupt (its zip directory is missing or damaged)") from None
        raise ModelFileError(path, "not a vmsentry behaviour model (not an .npz file)") from None
    try:
        with archive:
            if "header.npy" not in archive.namelist():
                raise ValueError("not a vmsentry behaviour model (no header member)")
            _check_members(archive)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
            message = f"truncated or corrupt ({message})"
        raise ModelFileError(path, message) from None


def _parse_header(path: str, arrays: dict[str, np.ndarray]) -> dict:
    raw = arrays["header"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(path, "the header member is not JSON bytes")
    try:
        header = parse_json(raw.tobytes(), "the header is not UTF-8 JSON")
    except BadInput as exc:
        raise ModelFileError(path, f"header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(path, "not a vmsentry behaviour model (another format)")
    version = header.get("version")
    if version != VERSION:
        raise ModelFileError(
            path, f"model version {version}, this vmsentry reads {VERSION}: retrain with `vmsentry baseline train`"
        )
    return header


def _member(arrays: dict[str, np.ndarray], name: str, shape: tuple | None = None, kind: str = "f") -> np.ndarray:
    if name not in arrays:
        raise ValueError(f"missing member {name!r}")
    value = arrays[name]
    if shape is not None and value.shape != shape:
        raise ValueError(f"member {name!r} has shape {value.shape}, expected {shape}")
    if value.dtype.kind not in ("iu" if kind == "i" else kind):
        raise ValueError(f"member {name!r} has type {value.dtype}, expected {'integers' if kind == 'i' else 'floats'}")
    if kind == "f" and not np.isfinite(value[~np.isinf(value)] if name == "if.threshold" else value).all():
        raise ValueError(f"member {name!r} has NaN or infinite values")
    return value


def _build(header: dict, arrays: dict[str, np.ndarray]) -> BehaviourModel:
    features = header["features"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or not features:
        raise ValueError("header: features is not a list of names")
    n_features = len(features)
    profile = header["profiles"]
    keys = profile["keys"]
    if not isinstance(keys, list) or not keys or keys[-1] != "network":
        raise ValueError("header: profiles.keys does not end with the network profile")
    shape = (len(keys), n_features)
    spread = _member(arrays, "profile.spread", shape)
    if (spread <= 0).any():
        raise ValueError("member 'profile.spread' has spreads <= 0")
    profiles = Profiles(
        keys=[str(k) for k in keys],
        centre=_member(arrays, "profile.centre", shape),
        spread=spread,
        count=_member(arrays, "profile.count", (len(keys),), "i"),
        updated=_member(arrays, "profile.updated", (len(keys),)),
        min_samples=int(profile["min_samples"]),
        floor=float(profile["floor"]),
    )
    scorer = header["scorer"]
    present = header["scorers"]
    if (
        scorer not in SCORERS
        or not isinstance(present, list)
        or scorer not in present
        or not set(present) <= set(SCORERS)
    ):
        raise ValueError(f"header: unknown scorer {scorer!r}")
    scorers = {}
    reference = {}
    for name in present:
        if name == "zmax":
            scorers[name] = ZMax()
        elif name == "surprise":
            from vmsentry.analyse.behaviour.surprise import Surprise

            for member in ("sp.grid", "sp.tail", "sp.weights", "sp.count"):
                _member(arrays, member)
            scorers[name] = Surprise.from_arrays(arrays, n_features)
        elif name == "iforest":
            from vmsentry.analyse.behaviour.iforest import IsolationForestArrays

            for member in ("if.roots", "if.left", "if.right", "if.feature"):
                _member(arrays, member, None, "i")
            for member in ("if.threshold", "if.leaf_path", "if.shape"):
                _member(arrays, member)
            scorers[name] = IsolationForestArrays.from_arrays(arrays, n_features)
        else:
            from vmsentry.analyse.behaviour.autoencoder import KitnetEnsemble

            for part in ("group", "output"):
                _member(arrays, f"ae.{part}.columns", None, "i")
                for member in ("in_mask", "hid_mask", "w1", "b1", "w2", "b2", "lo", "hi"):
                    _member(arrays, f"ae.{part}.{member}")
            scorers[name] = KitnetEnsemble.from_arrays(arrays, n_features)
        ref = _member(arrays, f"reference.{name}")
        if ref.ndim != 1 or not len(ref) or (np.diff(ref) < 0).any():
            raise ValueError(f"member 'reference.{name}' is not a sorted list of scores")
        reference[name] = ref
    calibration = None
    described = header.get("calibration")
    if described is not None:
        method = described["method"]
        x = _member(arrays, "calibration.x")
        y = _member(arrays, "calibration.y")
        if method == "isotonic" and (x.ndim != 1 or y.shape != x.shape or not len(x)):
            raise ValueError("calibration.x and calibration.y do not match")
        if method == "platt" and x.shape != (2,):
            raise ValueError(f"member 'calibration.x' has shape {x.shape}, expected (2,)")
        if method not in ("isotonic", "platt"):
            raise ValueError(f"header: unknown calibration method {method!r}")
        calibration = Calibration(method, x, y, int(described["positives"]), int(described["negatives"]))
    thresholds = header["thresholds"]
    window = float(header["window"])
    if not window > 0:
        raise ValueError("header: window is not a positive number of seconds")
    model = BehaviourModel(
        names=list(features),
        window=window,
        profiles=profiles,
        scorers=scorers,
        reference=reference,
        scorer=scorer,
        calibration=calibration,
        choice=dict(header.get("choice") or {}),
        log1p=_member(arrays, "log1p", (n_features,), "iu").astype(bool),
        q=float(thresholds["bh_q"]),
        confidence_threshold=float(thresholds["confidence"]),
        trained={**dict(header.get("trained") or {}), "entities": list(header.get("entities") or [])},
        calibration_report=dict(described or {}),
    )
    return model


def load(path: str, features: Sequence[str] | None = None) -> tuple[BehaviourModel, dict]:
    """The model in ``path`` and its header. ``features``: the names the feature extractor makes now; a
    model trained on another list is refused. Raises ``ModelFileError``."""
    try:
        data = read_bounded(path, MAX_FILE_BYTES)
    except BadInput as exc:
        raise ModelFileError(path, str(exc)) from None
    arrays = _read_archive(path, data)
    header = _parse_header(path, arrays)
    try:
        model = _build(header, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"header: missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(path, f"unusable model: {problem}") from None
    if features is not None and list(features) != model.names:
        missing = [f for f in model.names if f not in features]
        added = [f for f in features if f not in model.names]
        detail = (
            f"e.g. {missing[0]!r} is no longer extracted"
            if missing
            else (f"e.g. {added[0]!r} is new" if added else "in another order")
        )
        raise ModelFileError(
            path,
            f"trained on other features than this vmsentry extracts ({len(model.names)} vs {len(features)}, {detail}): "
            "retrain with `vmsentry baseline train`",
        )
    return model, header
