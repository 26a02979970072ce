"""The behaviour models (issue 14): profiles, scorers, calibration, the model file and the evaluation,
on synthetic samples (traffic-like feature matrices per entity with their own scales, plus injected
anomalies of a few kinds) so that they do not depend on the feature extractor."""

from __future__ import annotations

import json
import os
import struct
import zipfile

import numpy as np
import pytest

from vmsentry.analyse.behaviour import modelfile
from vmsentry.analyse.behaviour.autoencoder import KitnetEnsemble, correlation_groups
from vmsentry.analyse.behaviour.calibrate import (
    benjamini_hochberg,
    expected_calibration_error,
    fit_calibration,
    p_values,
)
from vmsentry.analyse.behaviour.evaluate import alarm_runs, evaluate, vm_hours
from vmsentry.analyse.behaviour.iforest import IsolationForestArrays
from vmsentry.analyse.behaviour.model import UPDATE_DRIFT_PER_HOUR, BehaviourModel
from vmsentry.analyse.behaviour.modelfile import ModelFileError
from vmsentry.model.behaviour import Entity, Incident, Samples

ROLES = ("web", "database", "build", "desktop")
KINDS = ("flood", "scan", "exfil", "decorrelated")
T0 = 1_700_000_000.0


def synthetic(n_entities=8, windows=400, features=16, seed=0, attacks=0.0, start=T0, counts=None):
    """Samples like traffic: per entity a slowly wandering activity level; each feature the log1p of a rate
    that follows the level with the entity's own scale (the same in every split: seeded by the entity).
    ``attacks``: that share of rows gets one of KINDS. Returns (samples, labels, kinds)."""
    rng = np.random.default_rng(seed)
    entities = [
        Entity(f"vm-{i}", f"52:54:00:00:00:{i:02x}", f"10.0.0.{i + 1}", ROLES[i % 4]) for i in range(n_entities)
    ]
    exponents = np.random.default_rng(999).uniform(0.5, 1.5, features)
    blocks, owner, starts = [], [], []
    for i in range(n_entities):
        n = windows if counts is None else counts[i]
        scale = np.exp(np.random.default_rng(1000 + i).normal(0, 1.5, features)) * 10 ** (i % 4)
        level = np.exp(np.cumsum(rng.normal(0, 0.05, n)) * 0.3 + rng.normal(0, 0.3, n))
        rates = scale * level[:, None] ** exponents * np.exp(rng.normal(0, 0.2, (n, features)))
        blocks.append(np.log1p(rates))
        owner.append(np.full(n, i))
        starts.append(start + np.arange(n, dtype=np.float64))
    matrix = np.vstack(blocks)
    labels = rng.random(len(matrix)) < attacks
    kinds = np.array([""] * len(matrix), dtype=object)
    which = rng.integers(0, len(KINDS), len(matrix))
    for k, kind in enumerate(KINDS):
        rows = np.flatnonzero(labels & (which == k))
        kinds[rows] = kind
        strength = rng.uniform(0.5, 1.5, (len(rows), 1))
        columns = {"flood": [0, 1], "scan": [2, 3, 4], "exfil": [5], "decorrelated": [6, 7, 8]}[kind]
        factor = {"flood": 30, "scan": 20, "exfil": 40, "decorrelated": 5}[kind]
        matrix[np.ix_(rows, columns)] += np.log(factor) * strength
    samples = Samples(
        entities=entities,
        names=[f"f{c}_per_s" for c in range(features)],
        window=1.0,
        entity=np.concatenate(owner).astype(np.int32),
        start=np.concatenate(starts),
        matrix=matrix.astype(np.float32),
    )
    return samples, labels, kinds


@pytest.fixture(scope="module")
def trained():
    train, _, _ = synthetic(seed=1)
    cal, labels, _ = synthetic(seed=2, attacks=0.1, windows=250, start=T0 + 10_000)
    model = BehaviourModel.train(train, seed=0)
    model.calibrate(cal, labels)
    return model


# -- scorers -----------------------------------------------------------------------------------------------


def test_iforest_export_scores_as_sklearn():
    from sklearn.ensemble import IsolationForest  # here: importing sklearn at collection grows every test's parent

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 9))
    x[:, 2] = np.round(x[:, 2])  # ties at thresholds
    forest = IsolationForest(n_estimators=40, max_samples=200, random_state=5).fit(x)
    exported = IsolationForestArrays.export(forest)
    probe = np.vstack([rng.normal(scale=2.0, size=(2000, 9)), x[:500]])
    np.testing.assert_allclose(exported.score(probe), -forest.score_samples(probe), rtol=0, atol=1e-6)


def test_autoencoder_learns_the_training_traffic():
    train, _, _ = synthetic(seed=1, n_entities=4, windows=500)
    z = train.matrix.astype(np.float64)
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    ensemble = KitnetEnsemble.fit(z, seed=0)
    shifted = z.copy()
    shifted[:, :4] += 3.0
    assert np.median(ensemble.score(z)) < np.median(ensemble.score(shifted))
    groups = correlation_groups(np.hstack([z, z]))  # 32 columns: cut into groups of at most 10
    assert max(len(g) for g in groups) <= 10
    assert sorted(c for g in groups for c in g) == list(range(32))


# -- calibration -------------------------------------------------------------------------------------------


def test_isotonic_calibration_is_monotone_and_calibrated():
    rng = np.random.default_rng(3)

    def draw(n):
        score = rng.uniform(0, 10, n)
        truth = 1 / (1 + np.exp(-(score - 6)))  # the true P(attack | score)
        return score, rng.random(n) < truth

    scores, labels = draw(20_000)
    calibration = fit_calibration(scores, labels)
    assert calibration.method == "isotonic"
    grid = np.linspace(-1, 11, 500)
    assert (np.diff(calibration(grid)) >= 0).all()
    fresh, fresh_labels = draw(20_000)
    assert expected_calibration_error(calibration(fresh), fresh_labels) < 0.03


def test_platt_calibration_when_few_attacks():
    rng = np.random.default_rng(4)
    scores = np.r_[rng.uniform(0.1, 1, 500), rng.uniform(2, 5, 10)]
    labels = np.r_[np.zeros(500, bool), np.ones(10, bool)]
    calibration = fit_calibration(scores, labels)
    assert calibration.method == "platt"
    assert calibration(np.array([0.2]))[0] < 0.2 < 0.8 < calibration(np.array([4.0]))[0]
    with pytest.raises(ValueError, match="attack and benign"):
        fit_calibration(scores, np.zeros(len(scores), bool))


def test_expected_calibration_error_known_values():
    assert expected_calibration_error(np.array([0.9, 0.9, 0.1, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([0.75, 0.75]), np.array([1, 0])) == pytest.approx(0.25)


def test_benjamini_hochberg_known_answer_per_window():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    # thresholds k q / m at q 0.05, m 8: .00625 .0125 .01875 .025 ...: the two smallest pass
    expected = np.array([True, True, False, False, False, False, False, False])
    np.testing.assert_array_equal(benjamini_hochberg(p, np.zeros(8), 0.05), expected)
    # a step-up: p_(3) passes though p_(2) does not (m 3, q 0.05: .0167 .0333 .05)
    np.testing.assert_array_equal(benjamini_hochberg(np.array([0.04, 0.01, 0.05]), np.zeros(3), 0.05), [True] * 3)
    # two windows are two families: the same p-values alone in a window of one pass
    groups = np.r_[np.zeros(8), [1.0]]
    mixed = benjamini_hochberg(np.r_[p[::-1], 0.04], groups, 0.05)
    np.testing.assert_array_equal(mixed, np.r_[expected[::-1], True])


def test_conformal_p_values():
    reference = np.arange(1.0, 100.0)  # 99 benign scores, sorted
    p = p_values(reference, np.array([98.5, 99.0, 0.0, 1.0]))
    np.testing.assert_allclose(p, [2 / 100, 2 / 100, 1.0, 1.0])
    # beyond the highest: an exponential tail, mean excess of the top 10 over the 11th highest (89) = 5.5
    beyond = p_values(reference, np.array([99.0 + 5.5, 99.0 + 55.0]))
    np.testing.assert_allclose(beyond, [np.exp(-1) / 100, np.exp(-10) / 100])


# -- the model ---------------------------------------------------------------------------------------------


def test_model_picks_a_scorer_and_alarms_on_attacks(trained):
    assert trained.scorer in ("zmax", "surprise", "iforest", "autoencoder")
    assert "best ROC AUC" in trained.choice["reason"]
    assert set(trained.choice["auc"]) == {"zmax", "surprise", "iforest", "autoencoder"}
    test, labels, kinds = synthetic(seed=3, attacks=0.05, windows=250, start=T0 + 20_000)
    raw, p, confidence = trained.score(test)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    alarmed = trained.alarms(test, (raw, p, confidence))
    assert alarmed[labels].mean() > 0.3  # the strong ones
    assert alarmed[~labels].mean() < 0.01
    assert (alarmed & labels).sum() / alarmed.sum() >= 0.8
    attack = int(np.flatnonzero(labels & (kinds == "exfil"))[0])
    reasons = trained.explain(test, attack)
    assert 3 <= len(reasons) <= 5
    assert reasons[0][0] == "f5_per_s" and reasons[0][3] > 5  # value / usual


def test_small_entity_falls_back_to_its_role_then_the_network():
    train, _, _ = synthetic(seed=1, n_entities=6, counts=[400, 400, 400, 400, 50, 50])
    model = BehaviourModel.train(train, scorer="zmax")
    assert "entity:vm-0" in model.profiles.keys and "entity:vm-4" not in model.profiles.keys
    rows = model.profiles.rows(train)
    # vm-4 is a web VM (like vm-0): the web role has 450 samples; vm-5 (database) uses vm-1 + its own 50
    assert model.profiles.keys[rows[train.entity == 4][0]] == "role:web"
    assert model.profiles.keys[rows[train.entity == 5][0]] == "role:database"
    alone = Samples(
        [Entity("new", None, None, None)], train.names, 1.0, np.zeros(1, np.int32), np.zeros(1), train.matrix[:1]
    )
    assert model.profiles.keys[model.profiles.rows(alone)[0]] == "network"


def test_uncalibrated_model_never_alarms():
    train, _, _ = synthetic(seed=1, n_entities=2)
    model = BehaviourModel.train(train, scorer="zmax")
    _, _, confidence = model.score(train)
    assert np.isnan(confidence).all() and not model.alarms(train).any()


def test_online_update_is_guarded(trained):
    model = BehaviourModel.train(synthetic(seed=1, n_entities=2, windows=400)[0], scorer="zmax")
    model.calibration = trained.calibration
    row = model.profiles.keys.index("entity:vm-0")
    before = model.profiles.centre[row].copy()
    spread = model.profiles.spread[row].copy()
    # two hours later, vm-0 ordinary but a little higher on every feature
    later, _, _ = synthetic(seed=5, n_entities=2, windows=300, start=T0 + 2 * 3600)
    later.matrix[later.entity == 0] += 0.1
    used = model.update(later, np.zeros(len(later), bool))
    assert used > 0
    moved = model.profiles.centre[row] - before
    assert (np.abs(moved) <= UPDATE_DRIFT_PER_HOUR * spread * 1.0 + 1e-12).all()  # at most one hour's cap
    assert moved.mean() > 0
    # an alarm on vm-1 keeps every vm-1 window within 10 minutes of it out of the update
    row1 = model.profiles.keys.index("entity:vm-1")
    centre1 = model.profiles.centre[row1].copy()
    again, _, _ = synthetic(seed=6, n_entities=2, windows=300, start=T0 + 4 * 3600)
    alarmed = (again.entity == 1) & (again.start == again.start[again.entity == 1].max())
    model.update(again, alarmed)
    np.testing.assert_array_equal(model.profiles.centre[row1], centre1)
    assert model.last_alarm["vm-1"] == again.start.max() + 1.0


def test_training_refuses_bad_matrices():
    train, _, _ = synthetic(seed=1, n_entities=2, windows=100)
    train.matrix[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        BehaviourModel.train(train)
    with pytest.raises(ValueError, match="unknown scorer"):
        BehaviourModel.train(synthetic(seed=1, n_entities=2, windows=100)[0], scorer="forest")


# -- the model file ----------------------------------------------------------------------------------------


def test_model_file_round_trip(trained, tmp_path):
    path = str(tmp_path / "model.npz")
    header = modelfile.save(
        trained, path, [{"file": "train.pcap", "sha256": "ab" * 32, "frames": 10, "first": 1.0, "last": 2.0}]
    )
    loaded, read_header = modelfile.load(path, trained.names)
    assert read_header == header and header["scorer"] == trained.scorer and header["version"] == 1
    test, _, _ = synthetic(seed=3, attacks=0.05, windows=100, start=T0 + 20_000)
    for mine, theirs in zip(trained.score(test), loaded.score(test)):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(trained.alarms(test), loaded.alarms(test))
    assert not [name for name in os.listdir(tmp_path) if name != "model.npz"]  # no temporary file left


@pytest.mark.parametrize("scorer", ["iforest", "autoencoder"])
def test_model_file_round_trip_each_scorer(scorer, tmp_path):
    train, _, _ = synthetic(seed=1, n_entities=2, windows=300)
    model = BehaviourModel.train(train, scorer=scorer)
    path = str(tmp_path / "m.npz")
    modelfile.save(model, path)
    loaded, _ = modelfile.load(path)
    np.testing.assert_array_equal(model.score(train)[0], loaded.score(train)[0])


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    change(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)


@pytest.fixture
def saved(trained, tmp_path):
    path = str(tmp_path / "model.npz")
    modelfile.save(trained, path)
    return path


def _refused(path, *needles, features=None):
    with pytest.raises(ModelFileError) as caught:
        modelfile.load(path, features)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for needle in needles:
        assert needle in message
    return message


def test_model_file_from_another_version(saved):
    _rewrite(saved, lambda header, _arrays: header.update(version=2))
    _refused(saved, "model version 2, this vmsentry reads 1: retrain with `vmsentry baseline train`")


def test_model_file_of_another_format(saved, tmp_path):
    _rewrite(saved, lambda header, _arrays: header.update(format="something-else"))
    _refused(saved, "another format")
    other = tmp_path / "capture.pcap"
    other.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(100))
    _refused(str(other), "not an .npz file")


def test_model_file_corrupt_and_truncated(saved):
    with open(saved, "rb") as fh:
        data = fh.read()
    with open(saved, "wb") as fh:
        fh.write(data[: len(data) // 2])
    _refused(saved, "truncated or corrupt")
    corrupt = bytearray(data)
    for offset in range(200, len(data) - 400, 97):  # inside the compressed members, not the directory
        corrupt[offset] ^= 0xFF
    with open(saved, "wb") as fh:
        fh.write(bytes(corrupt))
    _refused(saved)


def test_model_file_member_declaring_a_huge_size(saved):
    with open(saved, "rb") as fh:
        data = bytearray(fh.read())
    directory = data.index(b"PK\x01\x02")  # the first member's central directory entry
    struct.pack_into("<I", data, directory + 24, 0xF0000000)  # its uncompressed size: 3.75 GiB
    with open(saved, "wb") as fh:
        fh.write(bytes(data))
    _refused(saved, "MiB", "limit")


def test_model_file_with_an_object_array_is_not_unpickled(saved, tmp_path):
    _rewrite(saved, lambda _header, arrays: arrays.update({"profile.count": np.array([{"x": 1}], dtype=object)}))
    _refused(saved, "'profile.count' holds Python objects")
    bare = str(tmp_path / "objects.npz")
    np.savez(bare, header=np.array([os.system], dtype=object))
    _refused(bare, "holds Python objects")


def test_model_file_missing_member_and_wrong_shape(saved):
    _rewrite(saved, lambda _header, arrays: arrays.pop("profile.spread"))
    _refused(saved, "missing member 'profile.spread'")


def test_model_file_wrong_shape(saved):
    _rewrite(saved, lambda _header, arrays: arrays.update({"profile.centre": arrays["profile.centre"][:, :3]}))
    _refused(saved, "'profile.centre' has shape")


def test_model_file_features_must_match_the_extractor(saved, trained):
    _refused(saved, "other features", "retrain", features=[*trained.names[:-1], "new_feature_per_s"])


def test_model_file_symlink_at_the_target_is_replaced_not_followed(trained, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "model.npz"
    link.symlink_to(victim)
    modelfile.save(trained, str(link))
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and zipfile.is_zipfile(link)


def test_model_file_unwritable_target(trained, tmp_path):
    with pytest.raises(ModelFileError, match="cannot write"):
        modelfile.save(trained, str(tmp_path / "missing-folder" / "m.npz"))


# -- evaluation --------------------------------------------------------------------------------------------


def test_alarm_runs_and_vm_hours():
    entity = np.array([0, 0, 0, 0, 1, 1])
    start = np.array([0.0, 10.0, 50.0, 51.0, 0.0, 1000.0])
    assert alarm_runs(np.ones(6, bool), entity, start) == 4  # 0-10, 50-51 | 0 | 1000
    # entity 0: 10 + 40 + 1 + one window; entity 1: one window + one window (the 1000 s gap is not covered)
    assert vm_hours(entity, start, 1.0) == pytest.approx((10 + 40 + 1 + 1 + 1 + 1) / 3600)


def test_evaluate_on_known_arrays():
    # two entities, 100 windows each; entity 1 attacks (a scan) in windows 40-44
    entity = np.r_[np.zeros(100, int), np.ones(100, int)]
    start = np.r_[np.arange(100.0), np.arange(100.0)]
    labels = (entity == 1) & (start >= 40) & (start < 45)
    kinds = np.where(labels, "scan", "")
    scores = np.where(labels, 10.0, 1.0)
    scores[(entity == 1) & (start == 40)] = 0.5  # the first attack window looks ordinary
    scores[5] = 5.0  # one benign window of entity 0 stands out
    confidence = np.where(scores >= 5, 0.9, 0.01)
    alarms = confidence >= 0.8
    incidents = [Incident("scan", "b", ("a",), 40.0, 45.0, "nmap")]
    result = evaluate(scores, confidence, alarms, labels, kinds, entity, start, 1.0, incidents, ["a", "b"])
    overall, scan = result["rows"]
    assert overall["kind"] == "all" and scan["kind"] == "scan"
    assert scan["roc_auc"] == pytest.approx(0.8)  # 4 of 5 attack windows above every benign one, 1 below all
    assert overall["incidents_alarmed"] == 1.0
    assert overall["median_time_to_detect_s"] == 2.0  # window 41 ends at 42, 2 s after the start
    assert overall["precision"] == pytest.approx(4 / 5)
    benign = result["benign"]
    assert benign["false_alarms"] == 1
    assert benign["vm_hours"] == pytest.approx(200 / 3600)
    assert benign["false_alarms_per_vm_day"] == pytest.approx(1 / (200 / 86400))
    # 0.01 false alarms per VM-hour over 200 s: none allowed, so the threshold is above every benign score
    assert benign["threshold_at_1pct_fa_per_vm_hour"] > 5.0
    assert scan["detection_rate_at_1pct_fa"] == 1.0


def test_shares_scores_and_log_ratios_are_explained_as_stored():
    # the extractor stores catalogue.LINEAR columns without log1p: a live nmap scan was explained as
    # "share of new TCP connections not answered: 1.65 share" (expm1 of its 0.975) before the model knew
    from vmsentry.analyse.behaviour.catalogue import LINEAR, NAMES

    samples, _, _ = synthetic(n_entities=2, windows=200, features=len(NAMES))
    samples.names = list(NAMES)
    column = NAMES.index("unanswered_syn_ratio")
    samples.matrix[:, column] = 0.2
    model = BehaviourModel.train(samples, scorer="zmax")
    assert [not flag for flag in model.log1p] == [name in LINEAR for name in NAMES]
    samples.matrix[0, column] = 0.975
    explained = {name: (value, usual) for name, value, usual, _ in model.explain(samples, 0, top=len(NAMES))}
    assert explained["unanswered_syn_ratio"] == pytest.approx((0.975, 0.2), abs=1e-6)
