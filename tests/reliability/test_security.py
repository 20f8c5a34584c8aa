"""Security (issue 21): no pickle in the package, models load only in Keras safe mode, the Keras
version floor is checked at import; the W&B key check runs on test_user_data_run.py's run."""

import os
import pathlib
import re
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from keras_fgvc.errors import UserError
from keras_fgvc.layers import ArcFace
from keras_fgvc.models.loading import load_keras_model
from tests.pipelines.cli import ROOT, run_cli

PACKAGE = pathlib.Path(ROOT) / "keras_fgvc"
LOADER = PACKAGE / "models" / "loading.py"


def python_sources():
    """Every .py of the package, and run.py."""
    return sorted(PACKAGE.rglob("*.py")) + [pathlib.Path(ROOT) / "run.py"]


def grep(pattern, files):
    """``["path:line: text", ...]`` of the lines matching ``pattern`` (paths relative to the repository)."""
    regex = re.compile(pattern)
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    return hits


# --- no pickle -----------------------------------------------------------------------------------------

# Anything that can unpickle (run code from a data file): the modules, and numpy/pandas/torch entry points.
PICKLE = (r"^\s*(import|from)\s+(pickle|_pickle|cPickle|cloudpickle|dill|joblib|shelve)\b|\bimport pickle\b"
          r"|\bcPickle\b|allow_pickle\s*=\s*True|\bread_pickle\b|\bto_pickle\b|\bjoblib\b|\bdill\b|\btorch\.load\b"
          r"|\bpickle\.(load|loads|Unpickler)\b")


def test_the_pickle_pattern_catches_each_form(tmp_path):
    sample = tmp_path / "sample.py"
    lines = ["import pickle", "from cPickle import loads", "np.load(f, allow_pickle=True)", "pd.read_pickle(p)",
             "frame.to_pickle(p)", "import joblib", "import dill", "torch.load(p)", "x = pickle.loads(b)",
             "np.load(f, mmap_mode='r')", "pickled_name = 1"]
    sample.write_text("\n".join(lines))
    assert [hit.split(": ", 1)[1] for hit in grep(PICKLE, [sample])] == lines[:9]  # the last two are fine


def test_no_pickle_anywhere_in_the_package():
    hits = grep(PICKLE, python_sources())
    assert not hits, "pickle can run code from a data file; use JSON/NumPy (allow_pickle=False):\n" + "\n".join(hits)


# --- models load only in Keras safe mode -----------------------------------------------------------------


def lambda_model_file(path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    model.save(path)
    return str(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_file_with_a_lambda_layer_is_refused_with_one_clear_line(tmp_path, suffix):
    path = lambda_model_file(tmp_path / f"lambda{suffix}")
    with pytest.raises(UserError) as caught:
        load_keras_model(path)
    message = str(caught.value)
    assert message == (f"model file {path} is refused: it has a Lambda layer, which carries arbitrary Python code, "
                       "and keras_fgvc loads models with safe_mode=True")
    assert "\n" not in message and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_missing_model_file_is_a_user_error_naming_it(tmp_path):
    path = str(tmp_path / "nowhere" / "teacher.keras")
    with pytest.raises(UserError, match=f"^model file {re.escape(path)} not found$"):
        load_keras_model(path)


def test_a_safe_model_with_our_layers_round_trips(tmp_path):
    inputs = keras.Input((5,))
    embedding = keras.layers.Dense(4, name="embed")(inputs)
    model = keras.Model(inputs, ArcFace(3, s=8.0, m=0.3, name="arcface")(embedding))
    path = tmp_path / "safe.keras"
    model.save(path)
    loaded = load_keras_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for saved, reloaded in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(reloaded, saved)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))
    assert (loaded.get_layer("arcface").s, loaded.get_layer("arcface").m) == (8.0, 0.3)


def test_a_lambda_teacher_is_refused_by_the_distillation_engine(tmp_path):
    from keras_fgvc.training.stages import load_teacher

    path = lambda_model_file(tmp_path / "teacher.keras")
    cfg = SimpleNamespace(train=SimpleNamespace(stages=[]))  # no stage of that name: a model file
    with pytest.raises(UserError, match=f"^model file {re.escape(path)} is refused: it has a Lambda layer"):
        load_teacher(cfg, SimpleNamespace(teacher=path), model_fn=None)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_safe_teacher_file_loads_through_both_teacher_call_sites(tmp_path, suffix):
    from keras_fgvc.pipelines.squeeze import load_user_teacher
    from keras_fgvc.training.stages import load_teacher

    inputs = keras.Input((4,))
    teacher = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    path = str(tmp_path / f"teacher{suffix}")
    teacher.save(path)
    engine = load_teacher(SimpleNamespace(train=SimpleNamespace(stages=[])), SimpleNamespace(teacher=path), None)
    assert engine.trainable is False
    for loaded in (engine, load_user_teacher(path)):
        for saved, reloaded in zip(teacher.get_weights(), loaded.get_weights(), strict=True):
            np.testing.assert_array_equal(reloaded, saved)


def test_a_lambda_teacher_is_one_error_line_from_run_py_and_nothing_is_written(tmp_path):
    path = lambda_model_file(tmp_path / "teacher.keras")
    done, _ = run_cli("pipeline=squeeze", "smoke=true", f"squeeze.teacher={path}", f"runs_root={tmp_path}/runs",
                      f"export.dir={tmp_path}/saved", f"data.demo_root={tmp_path}/demo", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: config key 'squeeze.teacher': model file {path} is refused: it has a Lambda layer, which carries "
        "arbitrary Python code, and keras_fgvc loads models with safe_mode=True"]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.keras"]


def test_every_model_load_goes_through_the_safe_loader():
    others = [path for path in python_sources() if path != LOADER]
    # \b keeps BackupAndRestore's own _load_model method out; any keras/tf load_model call matches.
    assert grep(r"\bload_model\(", others) == []
    loader = grep(r"\bload_model\(", [LOADER])
    assert "keras_fgvc/models/loading.py:41: return keras.saving.load_model(path, compile=compile, safe_mode=True)" \
        in loader
    assert all("safe_mode=True" in hit for hit in loader), loader
    # Code that turns safe mode off (an argument or a call; loading.py quotes the names in a string).
    unsafe = grep(r"safe_mode\s*=\s*False\s*[,)]|enable_unsafe_deserialization\(|\bfunc_load\(", python_sources())
    assert unsafe == [], unsafe


# --- Keras version floor -----------------------------------------------------------------------------------

CVE_MESSAGE = ("keras {} is older than 3.14, which has model-loading CVEs (CVE-2025-1550, CVE-2025-8747, "
               "CVE-2025-9906, CVE-2025-12060): pip install 'keras>=3.14'")


@pytest.mark.parametrize("version", ["3.14.0", "3.14", "3.15.1", "3.16.0.dev2025", "3.14.1rc1", "3.14.0.post1",
                                     "3.14.0+cpu", "4.0.0"])
def test_keras_at_or_above_the_floor_is_accepted(version):
    from keras_fgvc._versions import check_keras_version

    assert check_keras_version(version) is None


@pytest.mark.parametrize("version", ["3.13.2", "3.0.0", "2.15.0", "3.14.0rc1", "3.14.0.dev20251124", "3.14.0b2"])
def test_keras_below_the_floor_is_refused_with_the_cves(version):
    """PEP 440 order: 3.14.0rc1 and 3.14.0.devN come before 3.14.0, as pip's ``keras>=3.14`` says."""
    from keras_fgvc._versions import check_keras_version

    with pytest.raises(ImportError) as caught:
        check_keras_version(version)
    assert str(caught.value) == CVE_MESSAGE.format(version)


def test_missing_or_unreadable_keras_is_a_clear_import_error():
    from keras_fgvc._versions import check_keras_version

    with pytest.raises(ImportError, match=r"^keras_fgvc needs keras 3.14 or newer, and keras is not installed: "
                                          r"pip install 'keras>=3.14'$"):
        check_keras_version(None)
    with pytest.raises(ImportError, match=r"cannot read the installed keras version 'unknown'"):
        check_keras_version("unknown")


def import_with_keras_metadata(version):
    """``import keras_fgvc`` in a fresh interpreter whose package metadata reports ``version`` for keras
    (None: no keras distribution); returns the CompletedProcess (it prints whether keras got imported)."""
    fake = ("import importlib.metadata as m\n"
            f"version = {version!r}\n"
            "real = m.version\n"
            "def fake(name):\n"
            "    if name not in ('keras', 'keras-nightly'):\n"
            "        return real(name)  # TensorFlow's own check reads the real metadata\n"
            "    if version is None:\n"
            "        raise m.PackageNotFoundError(name)\n"
            "    return version\n"
            "m.version = fake\n"
            "import sys, keras_fgvc\n"
            "print('keras imported:', 'keras' in sys.modules, 'tensorflow' in sys.modules)\n")
    return subprocess.run([sys.executable, "-c", fake], cwd=ROOT, capture_output=True, text=True, check=False)


def test_the_floor_is_checked_when_the_package_is_imported_without_importing_keras():
    ok = import_with_keras_metadata("3.15.1")
    assert ok.returncode == 0 and ok.stdout.strip() == "keras imported: False False", ok.stderr[-2000:]
    old = import_with_keras_metadata("3.13.2")
    assert old.returncode == 1
    assert old.stderr.strip().splitlines()[-1] == "ImportError: " + CVE_MESSAGE.format("3.13.2")
    missing = import_with_keras_metadata(None)
    assert missing.stderr.strip().splitlines()[-1] == (
        "ImportError: keras_fgvc needs keras 3.14 or newer, and keras is not installed: pip install 'keras>=3.14'")


# --- the W&B API key never lands in a file ------------------------------------------------------------------


def files_containing(root, secret):
    """Paths under ``root`` whose bytes contain ``secret`` (binary files too: weights, .wandb records)."""
    needle = secret.encode()
    return [str(p) for p in pathlib.Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_files_containing_finds_a_secret_in_text_and_binary_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "log.txt").write_text("key=s3cr3t-value\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\xffs3cr3t-value\x00")
    (tmp_path / "clean.txt").write_text("nothing here")
    assert sorted(files_containing(tmp_path, "s3cr3t-value")) == [str(tmp_path / "a" / "b" / "log.txt"),
                                                                   str(tmp_path / "blob.bin")]
