"""The JSON / YAML QConfigMapping files: round trips, torch hidden, malformed input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch.ao.quantization as tq

from jaxq.interop import (
    TranslationWarning,
    from_torch,
    load_qconfig_mapping,
    qconfig_mapping_to_dict,
    save_qconfig_mapping,
)
from jaxq.interop.mapping import jaxq_mapping_spec
from jaxq.qconfig_mapping import get_default_qconfig_mapping
from tests.interop.test_mapping import _custom_torch_mapping

warnings.filterwarnings("ignore", category=DeprecationWarning)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_torch_to_file_to_jaxq_is_one_call_each(tmp_path, suffix):
    theirs = _custom_torch_mapping()
    path = tmp_path / f"recipe{suffix}"
    save_qconfig_mapping(theirs, path)
    assert jaxq_mapping_spec(load_qconfig_mapping(path)) == jaxq_mapping_spec(
        from_torch(theirs))


def test_file_mirrors_torch_to_dict(tmp_path):
    path = tmp_path / "recipe.json"
    save_qconfig_mapping(_custom_torch_mapping(), path)
    data = json.loads(path.read_text())
    assert list(data) == ["", "object_type", "module_name_regex", "module_name",
                          "module_name_object_type_order"]
    assert data[""]["activation"] == {
        "class": "torch.ao.quantization.observer.HistogramObserver",
        "kwargs": {"reduce_range": False}}
    assert data["object_type"][0][0] == "torch.nn.Linear"
    assert data["object_type"][1][1]["weight"]["kwargs"]["dtype"] == "torch.qint8"
    assert data["module_name_object_type_order"][0][:3] == [
        "blocks.0", "torch.nn.functional.linear", 0]


def test_jaxq_mapping_round_trips(tmp_path):
    mapping = get_default_qconfig_mapping("x86")
    path = tmp_path / "x86.yml"
    save_qconfig_mapping(mapping, path)
    assert jaxq_mapping_spec(load_qconfig_mapping(path)) == jaxq_mapping_spec(mapping)


_HIDDEN_TORCH = textwrap.dedent("""
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith(("torch.", "torchao")):
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())
    import jax.numpy as jnp
    import numpy as np
    from jaxq.interop import load_qconfig_mapping, save_qconfig_mapping
    from jaxq.nn import layout

    mapping = load_qconfig_mapping(sys.argv[1])
    save_qconfig_mapping(mapping, sys.argv[2])
    again = load_qconfig_mapping(sys.argv[2])
    x = np.load(sys.argv[3])
    out = {}
    for name, m in (("first", mapping), ("again", again)):
        act = m.global_qconfig.activation()
        act(jnp.asarray(x.reshape(12, 18)))
        weight = layout.weight_observer_for_kernel(m.global_qconfig.weight,
                                                   layout.kernel_from_torch(x).shape)
        weight(layout.kernel_from_torch(jnp.asarray(x)))
        out[name] = [np.asarray(v).tolist() for v in
                     (*act.calculate_qparams(), *weight.calculate_qparams())]
    assert "torch" not in sys.modules
    print(json.dumps(out))
""")


def test_load_and_save_without_torch(tmp_path, rng):
    theirs = tq.QConfigMapping().set_global(tq.get_default_qconfig("x86"))
    path, copy, data = tmp_path / "in.json", tmp_path / "out.json", tmp_path / "x.npy"
    save_qconfig_mapping(theirs, path)
    x = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)
    np.save(data, x)
    result = subprocess.run([sys.executable, "-c", _HIDDEN_TORCH, str(path), str(copy),
                             str(data)], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["first"] == out["again"]
    # The same numbers torch computes.
    act, weight = theirs.global_qconfig.activation(), theirs.global_qconfig.weight()
    import torch
    act(torch.from_numpy(x.reshape(12, 18)))
    weight(torch.from_numpy(x))
    expected = [v.tolist() for v in (*act.calculate_qparams(), *weight.calculate_qparams())]
    np.testing.assert_array_equal(np.float32(out["first"][0]), np.float32(expected[0]))
    assert out["first"][1] == expected[1]
    np.testing.assert_array_equal(np.float32(out["first"][2]), np.float32(expected[2]))
    assert out["first"][3] == expected[3]


def _write(tmp_path, content, name="bad.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


_QCONFIG = {"activation": {"class": "MinMaxObserver"},
            "weight": {"class": "MinMaxObserver",
                       "kwargs": {"dtype": "torch.qint8",
                                  "qscheme": "torch.per_tensor_symmetric"}}}


@pytest.mark.parametrize("content, match", [
    ('{"": null, "object_type": [', r"bad\.json: malformed JSON at line 1"),
    ({"": {"activation": {"class": "FooObserver"}, "weight": None}},
     r"global\.activation: unknown observer class 'FooObserver'"),
    ({"object_type": [["torch.nn.Linear", {"activation": None, "weight": {
        "class": "MinMaxObserver", "kwargs": {"dtype": "torch.float16"}}}]]},
     r"object_type\['torch.nn.Linear'\]\.weight: .*float16"),
    ({"object_type": [["torch.nn.Linear", {"activation": {
        "class": "MinMaxObserver", "kwargs": {"dtype": "torch.quint8", "reduce_range": True,
                                              "qscheme": "torch.per_tensor_symmetric"}},
        "weight": None}]]},
     r"object_type\['torch.nn.Linear'\]\.activation.*symmetric.*quint8"),
    ({"": {"activation": None, "weight": {
        "class": "MinMaxObserver", "kwargs": {"qscheme": "torch.per_channel_affine"}}}},
     r"global\.weight.*per_channel_affine"),
    ({"object_type": [["torch.nn.Bogus", _QCONFIG]]}, r"unknown type name 'torch.nn.Bogus'"),
    ({"object_type": [["torch.nn.Linear"]]}, r"'object_type' entries must be 2-element"),
    ({"module_names": []}, r"unknown QConfigMapping entries \['module_names'\]"),
    ({"": {"activation": None}}, r"global: a QConfig must be null or an object"),
    ({"": {"activation": {"class": "MinMaxObserver", "args": [1]}, "weight": None}},
     r"global\.activation: unknown constructor entries \['args'\]"),
    ([1, 2], r"must be an object"),
])
def test_malformed_files_name_the_entry(tmp_path, content, match):
    path = _write(tmp_path, content)
    with pytest.raises(ValueError, match=match):
        load_qconfig_mapping(path)


def test_malformed_yaml(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.yaml: malformed YAML"):
        load_qconfig_mapping(_write(tmp_path, "object_type: [[a, b\n", "bad.yaml"))


def test_untranslatable_names_warn_or_raise(tmp_path):
    path = _write(tmp_path, {"object_type": [["torch.nn.functional.layer_norm", _QCONFIG],
                                             ["torch.nn.Linear", _QCONFIG]]})
    with pytest.warns(TranslationWarning, match="layer_norm"):
        mapping = load_qconfig_mapping(path)
    assert len(mapping.object_type_qconfigs) == 1
    with pytest.raises(ValueError, match="layer_norm"):
        load_qconfig_mapping(path, strict=True)


def test_what_a_file_cannot_hold_raises(tmp_path):
    mapping = tq.QConfigMapping().set_global(tq.QConfig(
        activation=tq.HistogramObserver.with_callable_args(bins=lambda: 64), weight=None))
    with pytest.raises(ValueError, match=r"\['activation'\]\['callable_args'\]\['bins'\]"):
        save_qconfig_mapping(mapping, tmp_path / "x.json")
    with pytest.raises(TypeError, match="QConfigMapping"):
        qconfig_mapping_to_dict(42)
