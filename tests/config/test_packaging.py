"""A wheel carries the pipeline YAMLs: installed without a checkout (a Kaggle notebook, pip from
git), keras_fgvc composes every pipeline's config from the files inside the package."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build uses the installed setuptools, no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    REPO], check=True, capture_output=True)
    (path,) = out.glob("keras_fgvc-*.whl")
    return path


def test_the_wheel_holds_every_pipeline_yaml_byte_for_byte(wheel):
    yamls = sorted(name for name in os.listdir(os.path.join(REPO, "pipelines")) if name.endswith(".yaml"))
    with zipfile.ZipFile(wheel) as archive:
        for name in yamls:
            with open(os.path.join(REPO, "pipelines", name), "rb") as f:
                assert archive.read(f"keras_fgvc/pipeline_configs/{name}") == f.read()


def test_an_installed_wheel_composes_each_pipeline_without_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import keras_fgvc, os; from keras_fgvc.config.compose import available_pipelines, compose; "
            "assert keras_fgvc.__file__.startswith(os.environ['PYTHONPATH']), keras_fgvc.__file__; "
            "print(available_pipelines(), [compose([f'pipeline={p}']).pipeline for p in available_pipelines()])")
    # Run from an empty folder with only the installed copy on the path: no checkout to fall back on.
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-2000:]
    expected = sorted(name[:-5] for name in os.listdir(os.path.join(REPO, "pipelines")) if name.endswith(".yaml"))
    assert result.stdout.strip() == f"{expected} {expected}"
